"""The ``glassformer rasp`` commands: list, run, compile (a checkpoint other commands read), compare."""

import json

import pytest

from glassformer.cli import main
from glassformer.rasp.compiler import CompiledModel


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_names_every_program(capsys):
    from glassformer.rasp import library

    code, out, _ = run(capsys, "rasp", "list")
    assert code == 0
    for name in library.PROGRAMS:
        assert name in out


def test_run_interpreter_and_compiled(capsys):
    code, out, _ = run(capsys, "rasp", "run", "reverse", "--input", "abcd", "--compiled", "--code")
    assert code == 0
    assert "interpreter: dcba" in out and "compiled:    dcba" in out and "opp_idx = SequenceMap" in out
    code, out, _ = run(capsys, "rasp", "run", "long_addition", "--input", "683+345")
    assert "interpreter: 0001028" in out


def test_compile_writes_a_checkpoint(tmp_path, capsys):
    out_dir = tmp_path / "hist"
    code, out, _ = run(capsys, "rasp", "compile", "histogram", "--max-len", "6", "--out", str(out_dir), "--labels")
    assert code == 0 and "1 layers" in out and "hist=2" in out
    assert CompiledModel.load(out_dir).run("abca") == [2, 1, 1, 2]
    assert json.loads((out_dir / "extra.json").read_text())["rasp"]["program"] == "hist"


def test_compile_causal_writes_a_decoder(tmp_path, capsys):
    out_dir = tmp_path / "ph"
    code, out, _ = run(capsys, "rasp", "compile", "prefix_histogram", "--max-len", "6", "--causal", "--out", str(out_dir))
    assert code == 0 and CompiledModel.load(out_dir).causal
    assert json.loads((out_dir / "config.json").read_text())["arch"] == "decoder"
    code, _, err = run(capsys, "rasp", "compile", "reverse", "--max-len", "6", "--causal")
    assert code == 2 and "cannot compile 'length': causal=True needs" in err


def test_a_program_from_a_file(tmp_path, capsys):
    file = tmp_path / "mine.py"
    file.write_text("from glassformer.rasp import *\n"
                    "def smaller():\n"
                    "    return SelectorWidth(Select(tokens, tokens, LT)).named('smaller')\n"
                    "program = smaller()\n")
    code, out, _ = run(capsys, "rasp", "run", f"{file}:smaller", "--input", "dcab", "--compiled", "--vocab", "abcd")
    assert code == 0 and "interpreter: 3 2 0 1" in out and "compiled:    3 2 0 1" in out
    code, out, _ = run(capsys, "rasp", "compile", str(file), "--vocab", "a,b,c", "--max-len", "4")
    assert code == 0 and "smaller" in out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    code, _, err = run(capsys, "rasp", "run", "nosuch", "--input", "ab")
    assert code == 2 and "no library program 'nosuch'" in err
    code, _, err = run(capsys, "rasp", "run", str(tmp_path / "missing.py"), "--input", "ab")
    assert code == 2 and "program file not found" in err
    code, _, err = run(capsys, "rasp", "run", "reverse", "--input", "abz", "--compiled")
    assert code == 2 and "token 'z'" in err


def test_every_option_has_help():
    import argparse

    from glassformer.cli import build_parser

    parser = build_parser()
    rasp = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["rasp"]
    subs = next(a for a in rasp._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subs) == {"list", "run", "compile", "compare"}
    for name, sub in subs.items():
        for action in sub._actions:
            assert action.help, f"rasp {name}: {action.dest} has no help"


def test_compare_trains_and_reports(tmp_path, capsys):
    code, out, _ = run(capsys, "rasp", "compare", "histogram", "--max-len", "4", "--steps", "60", "--d-model", "16",
                       "--decompile-inputs", "200", "--out", str(tmp_path / "cmp"))
    assert code == 0 and "| token_accuracy |" in out and "Decompiled trained model, step by step" in out
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["compiled"]["sequence_accuracy"] == 1.0
    compiled = data["programs"]["compiled"]  # the compiled model decompiles back to histogram
    assert compiled["agree_with_program"] == 1.0 and any(s["kind"] == "width" and s["iia"] == 1.0 for s in compiled["steps"])
    assert 0.0 <= data["programs"]["trained"]["match_sequence"] <= 1.0 and data["scores"] == []
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000


def test_an_int_input_that_is_not_an_int_is_named():
    from glassformer.errors import InputError
    from glassformer.rasp.cli import parse_input

    assert parse_input("3, 1 2", None, [1, 2, 3]) == [3, 1, 2]
    with pytest.raises(InputError, match="'a'.*not one"):
        parse_input("3 a", None, [1, 2, 3])
