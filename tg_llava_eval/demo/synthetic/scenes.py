"""Scenes of the synthetic vision-language dataset: coloured shapes in the cells of a grid.

A *scene* is a ``grid × grid`` board (2×2 by default) whose cells are either empty or hold one
shape of one colour. Scenes are sampled from a :class:`random.Random` stream and rendered with
PIL's aliasing-free drawing primitives, so

* the same seed gives the same scenes and byte-identical PNG files (PIL writes no timestamps);
* every shape is drawn in an exact palette colour on a white background, which lets a test read
  the scene back from the pixels alone (the questions are answerable from the image).

Why a grid: about half of the questions of the dataset
(:mod:`tg_llava_eval.demo.synthetic.questions`) ask about *where* things are ("the shape in the
top-left", "on the right"), so the answer depends on the part of the image the question names —
exactly what TG-LLaVA's text guidance (TG-FOM mask, TG-DP perceiver) is meant to exploit; a
location-agnostic model cannot beat chance on those. The others ask about the whole image
(one-shape scenes, counts of all shapes).

Everything here is pure Python + PIL; no torch.
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
from collections.abc import Sequence

from PIL import Image, ImageDraw

#: Palette: colour name -> RGB. Names are the answers of colour questions; the values are far
#: apart in RGB so that a pixel reader never confuses two of them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 205, 20),
    "purple": (140, 50, 180),
    "orange": (245, 125, 10),
}

#: Shape names, the answers of shape questions (four, so a shape MCQ offers every shape).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

#: Background of every image (white; not a palette colour).
BACKGROUND: tuple[int, int, int] = (255, 255, 255)

#: Star geometry: number of points and inner/outer radius ratio.
STAR_POINTS = 5
STAR_INNER_RATIO = 0.45

#: Shape size as a fraction of the cell side: sampled uniformly in this range.
SHAPE_SCALE_RANGE: tuple[float, float] = (0.55, 0.8)

#: Smallest cell side in pixels for which the four shapes stay distinguishable.
MIN_CELL_PIXELS = 12


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Names of the rows and columns of one grid size.

    Attributes:
        row_names: top to bottom, e.g. ``("top", "bottom")``.
        col_names: left to right, e.g. ``("left", "right")``.
        row_phrases: the region phrase of each whole row ("at the top").
        col_phrases: the region phrase of each whole column ("on the left").
    """

    row_names: tuple[str, ...]
    col_names: tuple[str, ...]
    row_phrases: tuple[str, ...]
    col_phrases: tuple[str, ...]

    @property
    def size(self) -> int:
        """Number of rows (= columns)."""
        return len(self.row_names)

    def cell_name(self, row: int, col: int) -> str:
        """Name of one cell, e.g. ``"top-left"``; the centre of a 3×3 grid is ``"centre"``."""
        if self.row_names[row] == "middle" and self.col_names[col] == "centre":
            return "centre"
        return f"{self.row_names[row]}-{self.col_names[col]}"


#: Supported grid sizes and their vocabulary.
GRID_LAYOUTS: dict[int, GridLayout] = {
    2: GridLayout(
        row_names=("top", "bottom"),
        col_names=("left", "right"),
        row_phrases=("at the top", "at the bottom"),
        col_phrases=("on the left", "on the right"),
    ),
    3: GridLayout(
        row_names=("top", "middle", "bottom"),
        col_names=("left", "centre", "right"),
        row_phrases=("in the top row", "in the middle row", "in the bottom row"),
        col_phrases=("in the left column", "in the centre column", "in the right column"),
    ),
}


@dataclasses.dataclass(frozen=True)
class Region:
    """A set of cells the questions can name: a single cell, a whole row or a whole column.

    Attributes:
        phrase: how a question names it ("in the top-left", "on the right").
        cells: row-major indices of the cells it covers.
    """

    phrase: str
    cells: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class PlacedShape:
    """One shape in one cell, with its rendering geometry.

    Attributes:
        colour: a key of :data:`COLOURS`.
        shape: one of :data:`SHAPES`.
        scale: side of the shape's bounding box as a fraction of the cell side.
        offset: centre offset inside the cell, as fractions of the free margin in ``[-1, 1]``.
    """

    colour: str
    shape: str
    scale: float
    offset: tuple[float, float]

    @property
    def label(self) -> str:
        """``"red circle"``."""
        return f"{self.colour} {self.shape}"


@dataclasses.dataclass(frozen=True)
class Scene:
    """A ``grid × grid`` board; ``cells`` is row-major, ``None`` = empty cell.

    Attributes:
        grid: the number of rows (= columns), a key of :data:`GRID_LAYOUTS`.
        cells: ``grid * grid`` entries.
    """

    grid: int
    cells: tuple[PlacedShape | None, ...]

    @property
    def layout(self) -> GridLayout:
        """Row/column vocabulary of this grid size."""
        return GRID_LAYOUTS[self.grid]

    def cell_name(self, index: int) -> str:
        """Name of the cell at row-major ``index``."""
        return self.layout.cell_name(*divmod(index, self.grid))

    def cell_regions(self) -> list[Region]:
        """One :class:`Region` per cell ("in the top-left")."""
        return [Region(f"in the {self.cell_name(i)}", (i,)) for i in range(self.grid**2)]

    def line_regions(self) -> list[Region]:
        """One :class:`Region` per row and per column ("at the top", "on the left")."""
        g, layout = self.grid, self.layout
        rows = [Region(layout.row_phrases[r], tuple(r * g + c for c in range(g))) for r in range(g)]
        cols = [Region(layout.col_phrases[c], tuple(r * g + c for r in range(g))) for c in range(g)]
        return rows + cols

    def occupied(self) -> list[int]:
        """Row-major indices of the non-empty cells."""
        return [i for i, cell in enumerate(self.cells) if cell is not None]

    def signature(self) -> tuple[str | None, ...]:
        """Content of the cells without geometry: used to keep test layouts out of training."""
        return tuple(None if cell is None else cell.label for cell in self.cells)

    def caption(self) -> str:
        """A one-sentence description listing every shape with its cell, in row-major order.

        Returns:
            e.g. ``"A red circle in the top-left and a blue star in the bottom-right."``.
        """
        parts = [f"{with_article(self.cells[i].label)} in the {self.cell_name(i)}" for i in self.occupied()]
        if len(parts) == 1:
            text = parts[0]
        else:
            text = ", ".join(parts[:-1]) + " and " + parts[-1]
        return text[0].upper() + text[1:] + "."


def with_article(words: str) -> str:
    """``"a red circle"`` / ``"an orange star"``: the indefinite article English needs."""
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def check_geometry(image_size: int, grid: int) -> None:
    """Validate an image size / grid pair.

    Raises:
        ValueError: naming ``grid`` if unsupported, or ``image_size`` if the cells would be
            smaller than :data:`MIN_CELL_PIXELS`.
    """
    if grid not in GRID_LAYOUTS:
        raise ValueError(f"grid={grid} is not supported; choose one of {sorted(GRID_LAYOUTS)}")
    if image_size // grid < MIN_CELL_PIXELS:
        raise ValueError(
            f"image_size={image_size} gives {image_size // grid}-pixel cells for grid={grid}; "
            f"need at least {MIN_CELL_PIXELS} pixels per cell (image_size >= {MIN_CELL_PIXELS * grid})"
        )


def sample_scene(
    rng: random.Random,
    *,
    grid: int,
    min_shapes: int = 1,
    max_shapes: int | None = None,
) -> Scene:
    """Draw one scene: a random number of shapes in random distinct cells.

    Args:
        rng: the stream all randomness comes from (determinism).
        grid: grid size (a key of :data:`GRID_LAYOUTS`).
        min_shapes: fewest occupied cells (>= 1: an empty image has nothing to ask about).
        max_shapes: most occupied cells; default all cells.

    Returns:
        The :class:`Scene`.

    Raises:
        ValueError: if the shape counts are impossible for the grid.
    """
    n_cells = grid * grid
    max_shapes = n_cells if max_shapes is None else max_shapes
    if not 1 <= min_shapes <= max_shapes <= n_cells:
        raise ValueError(
            f"need 1 <= min_shapes ({min_shapes}) <= max_shapes ({max_shapes}) <= {n_cells} cells"
        )
    n_shapes = rng.randint(min_shapes, max_shapes)
    chosen = set(rng.sample(range(n_cells), n_shapes))
    colours = sorted(COLOURS)
    cells: list[PlacedShape | None] = []
    for index in range(n_cells):
        if index not in chosen:
            cells.append(None)
            continue
        cells.append(
            PlacedShape(
                colour=rng.choice(colours),
                shape=rng.choice(SHAPES),
                scale=rng.uniform(*SHAPE_SCALE_RANGE),
                offset=(rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)),
            )
        )
    return Scene(grid=grid, cells=tuple(cells))


def _shape_box(scene: Scene, index: int, image_size: int) -> tuple[int, int, int, int]:
    """Integer bounding box ``(x0, y0, x1, y1)`` (inclusive) of the shape in cell ``index``.

    The box is a square of side ``scale × cell`` placed inside the cell with a one-pixel margin,
    shifted by ``offset`` within the free space, so shapes never touch a neighbouring cell.
    """
    shape = scene.cells[index]
    row, col = divmod(index, scene.grid)
    x_lo, x_hi = col * image_size // scene.grid, (col + 1) * image_size // scene.grid
    y_lo, y_hi = row * image_size // scene.grid, (row + 1) * image_size // scene.grid
    cell = min(x_hi - x_lo, y_hi - y_lo)
    side = max(int(round(shape.scale * cell)), 4)
    free = cell - side - 2  # one background pixel on each side
    dx = int(round((shape.offset[0] + 1.0) / 2.0 * free))
    dy = int(round((shape.offset[1] + 1.0) / 2.0 * free))
    x0, y0 = x_lo + 1 + dx, y_lo + 1 + dy
    return x0, y0, x0 + side - 1, y0 + side - 1


def _star_polygon(box: tuple[int, int, int, int]) -> list[tuple[float, float]]:
    """Vertices of a :data:`STAR_POINTS`-pointed star inscribed in ``box``, first point up."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    outer = (x1 - x0) / 2.0
    points = []
    for k in range(2 * STAR_POINTS):
        radius = outer if k % 2 == 0 else outer * STAR_INNER_RATIO
        angle = -math.pi / 2 + k * math.pi / STAR_POINTS
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def render_scene(scene: Scene, image_size: int) -> Image.Image:
    """Draw a scene as an RGB image.

    Args:
        scene: the scene.
        image_size: side of the square image in pixels.

    Returns:
        ``PIL.Image`` of mode RGB and size ``(image_size, image_size)``; shapes in exact palette
        colours (no anti-aliasing) on :data:`BACKGROUND`.

    Raises:
        ValueError: from :func:`check_geometry`.
    """
    check_geometry(image_size, scene.grid)
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for index in scene.occupied():
        shape = scene.cells[index]
        fill = COLOURS[shape.colour]
        box = _shape_box(scene, index, image_size)
        x0, y0, x1, y1 = box
        if shape.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape.shape == "square":
            draw.rectangle(box, fill=fill)
        elif shape.shape == "triangle":
            draw.polygon([((x0 + x1) / 2.0, y0), (x0, y1), (x1, y1)], fill=fill)
        elif shape.shape == "star":
            draw.polygon(_star_polygon(box), fill=fill)
        else:  # a Scene built by hand with an unknown shape
            raise ValueError(f"unknown shape {shape.shape!r} in cell {index}; known: {SHAPES}")
    return image


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of ``image`` (deterministic: fixed compression level, no metadata)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def shapes_in(scene: Scene, cells: Sequence[int]) -> list[PlacedShape]:
    """The shapes in the given cells (empty cells skipped), in the order of ``cells``."""
    return [scene.cells[i] for i in cells if scene.cells[i] is not None]
