"""Static checks of the committed notebooks (nbval executes them separately)."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))

spec = importlib.util.spec_from_file_location("sync_headers", ROOT / "scripts" / "sync_notebook_headers.py")
sync_headers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sync_headers)


def test_the_course_map_links_every_chapter():
    """Notebook 00's course map links each chapter notebook, and each link resolves."""
    overview = nbformat.read(ROOT / "notebooks" / "00_setup_and_overview.ipynb", as_version=4)
    text = "".join(c.source for c in overview.cells if c.cell_type == "markdown")
    linked = set(re.findall(r"\]\((\d\d_[\w]+\.ipynb)\)", text)) - {"00_setup_and_overview.ipynb"}
    chapters = {p.name for p in NOTEBOOKS if not p.name.startswith("00_")}
    assert chapters and linked == chapters, (
        f"missing from the map: {chapters - linked}; dead links: {linked - chapters}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_header_and_footer_are_current(path):
    """Badge, setup cell (with aigc_tf.REPO_URL) and wall-time cell are the generated ones."""
    import aigc_tf

    nb = nbformat.read(path, as_version=4)
    header, footer = sync_headers.expected_cells(path)
    assert [c.source for c in nb.cells[:2]] == [c.source for c in header], "run scripts/sync_notebook_headers.py"
    assert nb.cells[-1].source == footer[0].source, "run scripts/sync_notebook_headers.py"
    assert aigc_tf.REPO_URL in nb.cells[1].source and path.name in nb.cells[0].source
    assert nb.cells[2].cell_type == "markdown" and nb.cells[2].source.startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_a_clean_cpu_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert None not in counts and counts == sorted(counts), "re-run the whole notebook (make notebooks)"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in code[0].outputs)
    assert re.search(r"profile: cpu\b", text), "committed outputs must come from the cpu profile"
    assert "wall time:" in "".join(o.get("text", "") for o in code[-1].outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_model_code_in_notebooks(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*class \w+\((keras\.)?(Model|layers\.Layer|Layer)\)", cell.source, re.M), (
                cell.source
            )


TRAINING_CODE = re.compile(
    r"GradientTape|apply_gradients|\.apply\(\s*grad|optimizer\.apply\(|^\s*for \w+ in .*(_ds|dataset)\b.*:"
    r"|^\s*for .*:\n(?:[ \t]+.*\n)*?[ \t]+.*(?:fit_for_time|\.fit)\(",  # a loop that trains models
    re.M,
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_training_code_in_chapter_notebooks(path):
    """Training steps, gradient tapes and loops over a dataset belong in aigc_tf, not in a chapter's cells."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not TRAINING_CODE.search(cell.source), cell.source


# A measured figure in prose: a decimal (0.93, 1,541.2) or a percentage (63 %, 98.8%).
# Inline and display maths ($...$) hold formulas and constants, not measurements.
FIGURE = re.compile(r"(?<![\w.])(\d[\d,]*\.\d+|\d[\d,]*(?:\.\d+)?(?=\s?%))(?![\w])")
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.S)


def _numbers(text: str) -> set[float]:
    return {float(m.replace(",", "")) for m in re.findall(r"\d[\d,]*(?:\.\d+)?", text)}


def _traced(figure: str, known: set[float]) -> bool:
    """``figure`` equals a known number, or one rounded to the figure's decimals (99.07 → "99.1")."""
    value = float(figure.replace(",", ""))
    decimals = len(figure.partition(".")[2])
    return any(round(k, decimals) == value for k in known)


def stale_figures(path: Path) -> list[str]:
    """Figures in ``path``'s markdown found in none of: its code, its outputs, benchmarks/*.md."""
    nb = nbformat.read(path, as_version=4)
    sources = [p.read_text() for p in (ROOT / "benchmarks").rglob("*.md")]
    for cell in nb.cells:
        if cell.cell_type == "code":
            sources.append(cell.source)
            for output in cell.get("outputs", []):
                sources.append(str(output.get("text", "")))
                sources.extend(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))
    known = _numbers("\n".join(sources))
    stale = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        prose = MATH.sub(" ", cell.source)
        for match in FIGURE.finditer(prose):
            if not _traced(match.group(1), known):
                stale.append(
                    f"cell {index}: {match.group(1)!r} in …{prose[max(0, match.start() - 50) : match.end() + 10]}…"
                )
    return stale


def test_the_stale_figure_check_catches_an_untraced_number(tmp_path):
    """The check below can fail: a typed-in figure is caught, a rendered or cited one is not."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("FID fell to 12.34 and 77 % were recognisable; $\\log 4 \\approx 1.386$."),
        nbformat.v4.new_code_cell(
            "lr = 0.0005", outputs=[nbformat.v4.new_output("stream", text="recognisable 77.0 %\n")]
        ),
        nbformat.v4.new_markdown_cell("With lr 5e-4 (0.0005) the rate is 77.0 %."),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    stale = stale_figures(path)
    assert len(stale) == 1 and "'12.34'" in stale[0], stale


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_stale_figures_in_prose(path):
    """A measured figure in a markdown cell is rendered by the run or cited from benchmarks/RESULTS.md."""
    assert stale_figures(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_about_cell_is_current(path):
    """A notebook whose metadata has objectives opens (after its title) with the generated "About" cell."""
    nb = nbformat.read(path, as_version=4)
    about = sync_headers.about_source(nb)
    tagged = [c for c in nb.cells if sync_headers.ABOUT_TAG in c.get("metadata", {}).get("tags", [])]
    if about is None:
        assert not tagged, "an About cell without aigc_tf.objectives in the metadata"
        return
    assert nb.cells[3] in tagged and len(tagged) == 1, "run scripts/sync_notebook_headers.py"
    assert nb.cells[3].source == about, "run scripts/sync_notebook_headers.py"


def test_about_cell_reads_the_cpu_time_of_the_last_run():
    nb = nbformat.v4.new_notebook()
    nb.metadata["aigc_tf"] = {"objectives": ["train a GAN"], "prerequisites": ["calculus"]}
    footer = nbformat.v4.new_code_cell(sync_headers.FOOTER_SOURCE, metadata={"tags": [sync_headers.FOOTER_TAG]})
    footer.outputs = [nbformat.v4.new_output("stream", text="wall time: 652 s (10.9 min) in the 'cpu' profile\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), footer]
    about = sync_headers.about_source(nb)
    assert "* train a GAN" in about and "* calculus" in about
    assert "about 11 min at the `cpu` profile" in about and "`gpu` profile's time is not measured" in about
    footer.outputs[0]["text"] = "wall time: 30 s (0.5 min) in the 'smoke' profile\n"
    assert "`cpu`" not in sync_headers.about_source(nb)  # only a cpu run's time is reported
    nb.metadata["aigc_tf"] = {}
    assert sync_headers.about_source(nb) is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_sentence_of_why_before_every_code_cell(path):
    """Literate notebooks: each code cell follows a markdown cell saying why it is there (the generated
    set-up and footer cells excepted)."""
    nb = nbformat.read(path, as_version=4)
    generated = {sync_headers.FOOTER_TAG, sync_headers.ABOUT_TAG}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or generated & set(cell.get("metadata", {}).get("tags", [])):
            continue
        before = nb.cells[index - 1] if index else None
        assert before is not None and before.cell_type == "markdown" and before.source.strip(), (
            f"cell {index} has no sentence before it:\n{cell.source[:200]}"
        )


# "`aigc_tf/x.py` lines 31–75" or "(`aigc_tf/x.py`, lines 176–242)"; "(lines 197–265)" cites the last file named.
CITATION = re.compile(r"(?:`(aigc_tf/[\w/]+\.py)`,?\s+)?lines (\d+)\s*[–-]\s*(\d+)")


def cited_ranges(source: str) -> list[tuple[str, int, int]]:
    cited, last = [], None
    for match in CITATION.finditer(source):
        last = match.group(1) or last
        if last is not None:
            cited.append((last, int(match.group(2)), int(match.group(3))))
    return cited


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cited_line_ranges_are_whole_definitions(path):
    """A chapter that says "read lines A–B of file.py" must point at whole functions or classes:
    line A opens a definition and line B ends one (the next line is blank or less indented)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for name, first, last in cited_ranges(cell.source):
            lines = (ROOT / name).read_text().splitlines()
            assert 1 <= first < last <= len(lines), f"{name} lines {first}-{last}: the file has {len(lines)}"
            opening = lines[first - 1]
            assert opening.lstrip().startswith(("def ", "class ", "@")), (
                f"{name}:{first} is not a definition: {opening}"
            )
            after = lines[last] if last < len(lines) else ""
            assert not after.strip() or _indent(after) <= _indent(opening), (
                f"{name} lines {first}-{last} end inside a definition (line {last + 1}: {after!r})"
            )


def test_the_citation_check_reads_both_forms():
    text = "see `aigc_tf/gan/losses.py` lines 31–75 and `GPT.call` (`aigc_tf/transformer.py`, lines 163–196), "
    text += "its cache (lines 197–265)"
    assert cited_ranges(text) == [
        ("aigc_tf/gan/losses.py", 31, 75),
        ("aigc_tf/transformer.py", 163, 196),
        ("aigc_tf/transformer.py", 197, 265),
    ]


def test_the_training_code_check_catches_a_loop_of_fits():
    loop = "models = {}\nfor beta in (1, 4):\n    m = build(beta)\n    fit_for_time(recipe, m, ds)\n"
    assert TRAINING_CODE.search(loop)
    assert not TRAINING_CODE.search(
        "models = fit_variants(recipe, variants, ds)\nfor b, m in models.items():\n    print(b)\n"
    )
