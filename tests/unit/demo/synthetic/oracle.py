"""An independent oracle for the synthetic dataset: reads scenes from pixels, answers questions.

It shares nothing with the generator but the public vocabulary (palette, shape names, grid
phrases): shapes are recognised from their pixels (fill ratio of the bounding box, then the width
of the bottom row to tell a triangle from a star), and questions are parsed from their text with
regular expressions. If the generator's stored answer agrees with this oracle for every item, the
questions are answerable from the image alone.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from tg_llava_eval.demo.synthetic.scenes import COLOURS, GRID_LAYOUTS

Cell = tuple[str, str] | None  # (colour, shape) or None


def classify_mask(mask: np.ndarray) -> str:
    """Shape name from a boolean mask holding exactly one shape."""
    ys, xs = np.nonzero(mask)
    box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    fill = box.mean()
    if fill > 0.95:
        return "square"
    if fill > 0.65:
        return "circle"
    # A triangle's base is its widest row; a star's bottom row is two thin tips.
    return "triangle" if box[-1].mean() > 0.7 else "star"


def read_scene(image: Image.Image, grid: int) -> list[Cell]:
    """Row-major cells decoded from the pixels of a synthetic image."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    size = pixels.shape[0]
    cells: list[Cell] = []
    for row in range(grid):
        for col in range(grid):
            block = pixels[row * size // grid : (row + 1) * size // grid, col * size // grid : (col + 1) * size // grid]
            found = [
                (name, np.all(block == np.array(rgb, dtype=np.int16), axis=-1))
                for name, rgb in COLOURS.items()
            ]
            found = [(name, mask) for name, mask in found if mask.any()]
            assert len(found) <= 1, f"cell {row},{col} holds several colours"
            cells.append(None if not found else (found[0][0], classify_mask(found[0][1])))
    return cells


def _phrases(grid: int) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Cell names -> index and region phrases -> indices, from the grid vocabulary."""
    layout = GRID_LAYOUTS[grid]
    cells = {layout.cell_name(r, c): r * grid + c for r in range(grid) for c in range(grid)}
    regions = {layout.row_phrases[r]: [r * grid + c for c in range(grid)] for r in range(grid)}
    regions.update({layout.col_phrases[c]: [r * grid + c for r in range(grid)] for c in range(grid)})
    return cells, regions


def answer(question: str, cells: list[Cell], grid: int) -> str:
    """The answer text the image gives to a question (colour, shape, digit, Yes/No)."""
    cell_names, regions = _phrases(grid)
    cell_re = "|".join(map(re.escape, sorted(cell_names, key=len, reverse=True)))
    region_re = "|".join(map(re.escape, sorted(regions, key=len, reverse=True)))
    first_line = question.split("\n")[0]
    m = re.fullmatch(rf"What (?:colour is|is the colour of) the shape in the ({cell_re})\?", first_line)
    if m:
        return cells[cell_names[m.group(1)]][0]
    m = re.fullmatch(rf"(?:Which|What) shape is in the ({cell_re})\?", first_line)
    if m:
        return cells[cell_names[m.group(1)]][1]
    m = re.fullmatch(rf"How many shapes are ({region_re})\?", first_line)
    if m:
        return str(sum(cells[i] is not None for i in regions[m.group(1)]))
    m = re.fullmatch(rf"Is there an? (\w+) (\w+) ({region_re})\? Please answer yes or no\.", first_line)
    if m:
        present = (m.group(1), m.group(2)) in [cells[i] for i in regions[m.group(3)]]
        return "Yes" if present else "No"
    m = re.fullmatch(rf"Is the shape in the ({cell_re}) (?:an? )?(\w+)\? Please answer yes or no\.", first_line)
    if m:
        return "Yes" if m.group(2) in cells[cell_names[m.group(1)]] else "No"
    # Whole-image questions: the one shape of a one-shape scene, or all shapes.
    shapes = [cell for cell in cells if cell is not None]
    if first_line == "How many shapes are in the image?":
        return str(len(shapes))
    if first_line in ("What colour is the shape?", "What is the colour of the shape?",
                      "Which shape is in the image?", "What shape is in the image?"):
        assert len(shapes) == 1, f"{question!r} asked of a scene with {len(shapes)} shapes"
        return shapes[0][0 if "colour" in first_line else 1]
    m = re.fullmatch(r"Is the shape (?:an? )?(\w+)\? Please answer yes or no\.", first_line)
    if m:
        assert len(shapes) == 1, f"{question!r} asked of a scene with {len(shapes)} shapes"
        return "Yes" if m.group(1) in shapes[0] else "No"
    raise AssertionError(f"oracle cannot parse question {question!r}")


def caption_cells(caption: str, grid: int) -> list[Cell]:
    """Cells listed by a stage-1 caption ("A red circle in the top-left and ...")."""
    cell_names, _ = _phrases(grid)
    cells: list[Cell] = [None] * grid * grid
    for colour, shape, place in re.findall(r"\b[Aa]n? (\w+) (\w+) in the ([\w-]+)", caption):
        cells[cell_names[place]] = (colour, shape)
    return cells
