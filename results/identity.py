"""Model identity: toolkit model name -> (variant, method, LLM, ablation switches).

Score files name models the way their toolkit does (a VLMEvalKit preset such as
``TG-LLaVA-Qwen2-7B``, an lmms-eval ``pretrained=`` path). Tables need the project's identity of
the model. It is resolved from declared data only — never from substrings of names:

1. an explicit user mapping (a CSV ``model,variant[,method,llm,name]``, exact model names; see
   :func:`read_model_mapping`);
2. the run manifest ``tg_llava_run.json`` next to the outputs (:mod:`.manifest`), when it names a
   variant (a custom checkpoint's manifest has ``variant: null``);
3. lmms-eval's ``variant=`` model argument;
4. the VLMEvalKit preset names of the variant catalogue (:data:`MODEL_PRESETS`) and the variant ids
   themselves (a model folder named ``tg-llava-qwen2-7b`` is that variant).

The variant then gives method, LLM and the ablation switches through :data:`VARIANTS` (both
derived from :mod:`tg_llava_eval.variants`, which imports no torch), unless
the mapping or manifest overrides them. A model that nothing identifies keeps an empty variant;
collect logs one warning per such model (its records are kept, never dropped).

Display names. A toolkit names a model its own way, and the two toolkits name the same checkpoint
differently (VLMEvalKit by its ``--model`` / config name, lmms-eval by the ``pretrained=`` path).
The mapping's optional ``name`` column declares the name tables show for a toolkit model: its
records and sample predictions carry ``model=<name>`` (:meth:`ModelIdentity.table_name`). Only an
exact mapping match renames; nothing else does. The toolkit's own name stays traceable: each
record's ``source`` is the file that states it (lmms-eval ``model_name``; the VLMEvalKit model
folder), its ``manifest`` holds the run manifest's ``model_name`` and ``checkpoint`` when there is
one, and ``collect`` reports every renaming (``CollectResult.renamed``, printed by the CLI). A name
stands for one model: mapping rows that share a display name (a row without ``name`` displays as
its ``model``) must resolve to the same variant, method and LLM, else the mapping is refused.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tg_llava_eval.results.errors import ResultFileError
from tg_llava_eval.results.manifest import RunManifest
from tg_llava_eval.variants import LLM_BACKBONES, METHOD_TG_LLAVA, PAPER_LLMS
from tg_llava_eval.variants import VARIANTS as CATALOGUE

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class VariantInfo:
    """What a project variant is, as the tables need it.

    Attributes:
        method: ``TG-LLaVA`` or ``LLaVA-1.5`` (the baseline of the same code, both switches off).
        llm: Canonical LLM label (see :data:`LLM_ALIASES`).
        text_guided_mask: Whether TG-FOM is on (``use_text_guided_mask``).
        detail_perceiver: Whether TG-DP is on (``use_detail_perceiver``).
        paper_towers: The paper's CLIP ViT-L/14-336 vision and guide towers (``False`` for the
            SigLIP variants, which are compared with neither the paper nor LLaVA-1.5 in the Δ tables).
    """

    method: str
    llm: str
    text_guided_mask: bool
    detail_perceiver: bool
    paper_towers: bool = True

    @property
    def is_full_model(self) -> bool:
        """Both TG switches on: the model the ablations are compared with."""
        return self.text_guided_mask and self.detail_perceiver


#: The project's variants, read from the catalogue (:mod:`tg_llava_eval.variants`).
VARIANTS: dict[str, VariantInfo] = {
    name: VariantInfo(v.method, v.llm_label, v.switches.text_guided_mask, v.switches.detail_perceiver,
                      v.towers.is_paper)
    for name, v in CATALOGUE.items()
}

#: The three LLMs of the paper's main table, in display order.
MAIN_LLMS: tuple[str, ...] = tuple(LLM_BACKBONES[key].label for key in PAPER_LLMS)

#: Toolkit model names that identify a variant: the VLMEvalKit presets and their aliases (the short
#: baseline names ``LLaVA-1.5-<llm>-TG``). ``tg_llava`` (the generic preset, checkpoint given on
#: the command line) is deliberately absent: its variant comes from the run manifest.
MODEL_PRESETS: dict[str, str] = {
    toolkit_name: name
    for name, v in CATALOGUE.items()
    for toolkit_name in ((v.vlmevalkit_name,) if v.vlmevalkit_name else ()) + v.vlmevalkit_aliases
}

#: LLM names as publications write them -> the canonical labels used in tables: every backbone's
#: full name and aliases, and the LLMs that only reference scores mention.
LLM_ALIASES: dict[str, str] = {
    **{name: b.label for b in LLM_BACKBONES.values() for name in (b.display, *b.aliases)},
    "Vicuna-7B-v1.5": "Vicuna-7B",
}


def canonical_llm(name: str) -> str:
    """Canonical LLM label for ``name`` (unchanged when :data:`LLM_ALIASES` does not list it)."""
    return LLM_ALIASES.get(name, name)


@dataclass(frozen=True)
class ModelIdentity:
    """The resolved identity of a toolkit model.

    Attributes:
        variant: Project variant id, ``""`` if unknown.
        method: Method label, ``""`` if unknown.
        llm: Canonical LLM label, ``""`` if unknown.
        resolved_by: Which rule decided (``mapping``, ``manifest``, ``model_args``, ``preset``,
            ``variant-name`` or ``unknown``), for logs and docs.
        name: Display name declared by the user mapping's ``name`` column, ``""`` when none (the
            records keep the toolkit's name).
    """

    variant: str
    method: str
    llm: str
    resolved_by: str
    name: str = ""

    def table_name(self, toolkit_model: str) -> str:
        """The ``model`` that records and sample predictions carry: the declared display name,
        else the toolkit's own name ``toolkit_model``."""
        return self.name or toolkit_model


@dataclass(frozen=True)
class MappingEntry:
    """One row of a user model mapping.

    Attributes:
        variant: Project variant id.
        method, llm: Overrides of the variant table's labels (``""`` = from the table).
        name: Display name of the model in tables (``""`` = keep the toolkit's name).
    """

    variant: str
    method: str = ""
    llm: str = ""
    name: str = ""


#: Columns of a model mapping CSV: required, then optional (matched by header name, any order).
MAPPING_REQUIRED = ("model", "variant")
MAPPING_OPTIONAL = ("method", "llm", "name")


def read_model_mapping(path: str | Path) -> dict[str, MappingEntry]:
    """Read a user mapping CSV with columns ``model,variant`` and optional ``method,llm,name``.

    ``model`` is the toolkit's exact model name (VLMEvalKit model folder, lmms-eval ``model_name``
    = the ``pretrained=`` path, or its sanitized folder name). ``name``, when given, is the name
    tables show for that model (see the module docstring); several toolkit names may share one
    display name (the same checkpoint seen by both toolkits) if they resolve to the same model.

    Args:
        path: The CSV file.

    Returns:
        ``{toolkit model name: MappingEntry}``.

    Raises:
        ResultFileError: Unreadable file, missing or unknown columns, an empty model or variant, a model
            listed twice, or a display name given to models of different variant, method or LLM
            (named by line).
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in MAPPING_REQUIRED if c not in header]
            if missing:
                raise ResultFileError(
                    path, f"missing column(s) {missing}; a model mapping needs model,variant[,method,llm,name]"
                )
            # A misspelt optional column (``Name``, ``display_name``) would silently rename nothing.
            # Unnamed columns (a spreadsheet's trailing comma) are ignored.
            unknown = [c for c in header if c and c not in MAPPING_REQUIRED + MAPPING_OPTIONAL]
            if unknown:
                raise ResultFileError(
                    path, f"unknown column(s) {unknown}; a model mapping has model,variant[,method,llm,name]"
                )
            mapping: dict[str, MappingEntry] = {}
            # Display name -> (line, resolved variant/method/LLM) of the first row that uses it.
            shown_as: dict[str, tuple[int, ModelIdentity]] = {}
            for line, row in enumerate(reader, start=2):
                model = (row.get("model") or "").strip()
                variant = (row.get("variant") or "").strip()
                if not model or not variant:
                    raise ResultFileError(path, f"line {line}: 'model' and 'variant' must not be empty")
                if model in mapping:
                    raise ResultFileError(path, f"line {line}: model {model!r} is mapped twice")
                entry = MappingEntry(
                    variant=variant,
                    method=(row.get("method") or "").strip(),
                    llm=canonical_llm((row.get("llm") or "").strip()),
                    name=(row.get("name") or "").strip(),
                )
                _check_display_name(path, line, model, entry, shown_as)
                mapping[model] = entry
    except OSError as error:
        raise ResultFileError(path, f"cannot read model mapping: {error}") from None
    return mapping


def _check_display_name(
    path: Path, line: int, model: str, entry: MappingEntry, shown_as: dict[str, tuple[int, ModelIdentity]]
) -> None:
    """Refuse a display name that would stand for two different models in one table.

    A row without ``name`` displays as its ``model``, so ``a,tiny,,,X`` and ``X,tiny-baseline``
    conflict too. Rows are compared after completing method/LLM from the variant table, so a row
    that spells out the table's labels agrees with one that leaves them empty.

    Raises:
        ResultFileError: The name is already used by an earlier row for another variant, method
            or LLM (names both lines).
    """
    shown = entry.name or model
    identity = _complete(entry.variant, entry.method, entry.llm, "mapping")
    first = shown_as.setdefault(shown, (line, identity))
    first_line, first_identity = first
    if (first_identity.variant, first_identity.method, first_identity.llm) != (identity.variant, identity.method, identity.llm):
        raise ResultFileError(
            path,
            f"line {line}: display name {shown!r} (model {model!r}: variant {identity.variant!r}, method "
            f"{identity.method!r}, llm {identity.llm!r}) is already used on line {first_line} for variant "
            f"{first_identity.variant!r}, method {first_identity.method!r}, llm {first_identity.llm!r}; one name "
            f"in the tables must stand for one model",
        )


def resolve_identity(
    model: str,
    *,
    mapping: Mapping[str, MappingEntry] | None = None,
    manifest: RunManifest | None = None,
    model_args_variant: str = "",
    aliases: tuple[str, ...] = (),
) -> ModelIdentity:
    """Resolve a toolkit model name to a :class:`ModelIdentity` (rules in the module docstring).

    Args:
        model: The toolkit's model name.
        mapping: User mapping (from :func:`read_model_mapping`).
        manifest: The run manifest found next to the output, if any.
        model_args_variant: lmms-eval's ``variant=`` model argument, if any.
        aliases: Other exact names of the same model to try in the mapping and preset table
            (lmms-eval's ``model_name_sanitized``).

    Returns:
        The identity; ``variant == ""`` when nothing identifies the model. ``name`` is set only
        by a mapping row with a ``name`` (rule 1).
    """
    names = (model, *aliases)
    mapping = mapping or {}
    for name in names:
        if name in mapping:
            entry = mapping[name]
            return _complete(entry.variant, entry.method, entry.llm, "mapping", entry.name)
    if manifest is not None and manifest.variant:
        if manifest.variant in VARIANTS:  # the table's method/LLM labels win (see .manifest)
            return _complete(manifest.variant, "", "", "manifest")
        return _complete(manifest.variant, manifest.method, canonical_llm(manifest.llm), "manifest")
    if model_args_variant:
        return _complete(model_args_variant, "", "", "model_args")
    for name in names:
        if name in MODEL_PRESETS:
            return _complete(MODEL_PRESETS[name], "", "", "preset")
        if name in VARIANTS:
            return _complete(name, "", "", "variant-name")
    # A custom checkpoint: the manifest may still name its LLM.
    llm = canonical_llm(manifest.llm) if manifest is not None else ""
    return ModelIdentity("", "", llm, "unknown")


def _complete(variant: str, method: str, llm: str, resolved_by: str, name: str = "") -> ModelIdentity:
    """Fill method/LLM from :data:`VARIANTS` where not given explicitly."""
    info = VARIANTS.get(variant)
    if info is not None:
        method = method or info.method
        llm = llm or info.llm
    return ModelIdentity(variant, method, llm, resolved_by, name)


def variant_switches(variant: str, manifest: RunManifest | None = None) -> VariantInfo | None:
    """Method/LLM/switches of a variant: the manifest's ``switches`` override the table.

    Returns:
        The info, or ``None`` when the variant is unknown and the manifest does not declare both
        switches.
    """
    info = VARIANTS.get(variant)
    if manifest is not None and manifest.switches:
        switches = dict(manifest.switches)
        if info is not None:
            switches = {"text_guided_mask": info.text_guided_mask, "detail_perceiver": info.detail_perceiver, **switches}
        if set(switches) >= {"text_guided_mask", "detail_perceiver"}:
            return VariantInfo(
                method=manifest.method or (info.method if info else METHOD_TG_LLAVA),
                llm=canonical_llm(manifest.llm) or (info.llm if info else ""),
                text_guided_mask=switches["text_guided_mask"],
                detail_perceiver=switches["detail_perceiver"],
                paper_towers=info.paper_towers if info else True,
            )
    return info
