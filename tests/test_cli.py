"""The command line: exit codes, output formats, where results and messages go."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, SPECS, load_spec
from resdsl.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_clean_specs(capsys):
    code, out, err = run(capsys, "check", str(SPECS / "resnet50.res"), str(SPECS / "resnet20_cifar.res"))
    assert code == 0 and out == ""
    assert "2 specs checked, no errors" in err


def test_check_reports_errors_from_several_files_with_exit_1(capsys, tmp_path):
    a = tmp_path / "a.res"
    a.write_text("network n {\n    input [3, 32, 32]\n    conv1: conv(16, 3, strid = 2)\n}\n")
    b = tmp_path / "b.res"
    b.write_text("network m {\n    input [3, 32, 32]\n    fc: linear(10)\n}\n")
    code, out, err = run(capsys, "check", str(a), str(b))
    assert code == 1 and out == ""
    assert f"{a}:3:24: error[E020]: `conv` has no parameter `strid`" in err
    assert "did you mean `stride`?" in err
    assert f"{b}:3:5: error[E051]:" in err
    assert "found 2 errors in 2 of 2 specs" in err
    assert "Traceback" not in err


def test_missing_file_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "check", str(tmp_path / "nope.res"))
    assert code == 2 and "no such file" in err


def test_a_shipped_spec_by_name(capsys):
    code, out, _ = run(capsys, "stats", "resnet18", "--format", "json")
    assert code == 0
    assert json.loads(out)["params"] == 11_689_512


def test_unknown_shipped_name_suggests_one(capsys):
    code, _, err = run(capsys, "stats", "resnet5")
    assert code == 2 and "`resnet50`" in err


def test_stats_json_totals_equal_the_sum_of_sections(capsys):
    code, out, _ = run(capsys, "stats", str(SPECS / "resnet50.res"), "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["network"] == "resnet50"
    assert [s["name"] for s in data["sections"]] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert sum(s["params"] for s in data["sections"]) == data["params"] == 25_557_032
    assert sum(s["macs"] for s in data["sections"]) == data["macs"]
    assert [s["blocks"] for s in data["sections"] if s["kind"] == "stage"] == [3, 4, 6, 3]
    assert data["sections"][-2]["shape"] == [2048, 7, 7]


def test_stats_side_by_side(capsys):
    code, out, _ = run(capsys, "stats", str(SPECS / "resnet18.res"), str(SPECS / "resnet20_cifar.res"),
                       "--format", "markdown")
    assert code == 0
    header = out.splitlines()[2]
    assert "resnet18 params" in header and "resnet20_cifar params" in header
    total = next(line for line in out.splitlines() if line.startswith("| total"))
    assert "11,689,512" in total and "269,722" in total
    # a section only one network has (layer4) is blank for the other
    layer4 = next(line for line in out.splitlines() if line.startswith("| layer4"))
    assert layer4.count("|  ") >= 4


def test_stats_json_for_several_specs_is_a_list(capsys):
    _, out, _ = run(capsys, "stats", "resnet18", "resnet34", "--format", "json")
    assert [d["params"] for d in json.loads(out)] == [11_689_512, 21_797_672]


def test_stats_to_a_file(capsys, tmp_path):
    target = tmp_path / "stats.md"
    code, out, _ = run(capsys, "stats", "resnet50", "--format", "markdown", "-o", str(target))
    assert code == 0 and out == ""
    assert "25,557,032" in target.read_text()


def test_spec_error_leaves_an_existing_output_untouched(capsys, tmp_path):
    bad = tmp_path / "bad.res"
    bad.write_text("network n {\n    input [3, 32, 32]\n    x: nope()\n}\n")
    target = tmp_path / "out.txt"
    target.write_text("precious")
    code, _, err = run(capsys, "stats", str(bad), "-o", str(target))
    assert code == 1 and "E010" in err
    assert target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.res", "out.txt"]


def test_budget_and_allow_large(capsys, tmp_path):
    spec = tmp_path / "huge.res"
    spec.write_text("import std.resnet\nnetwork huge = resnet(block = basic, depths = [1, 1], "
                    "widths = [8192, 16384])\n")
    code, _, err = run(capsys, "check", str(spec))
    assert code == 1 and "E018" in err and "--allow-large" in err
    code, _, _ = run(capsys, "check", "--allow-large", str(spec))
    assert code == 0


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["stats", "--format", "yaml", "resnet50"])
    assert exc.value.code == 2


def test_console_script_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "resdsl.cli", "check", "resnet18"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_api_load_matches_cli():
    net = load_spec("resnet50")
    assert net.name == "resnet50" and net.source.endswith("resnet50.res")
    assert net.input_shape == (3, 224, 224) and net.output_shape == (1000,)


@pytest.mark.parametrize("target", ["{tmp}", "{tmp}/nodir/x.txt", "{tmp}/afile/x", "{tmp}/x.md/"])
def test_unwritable_outputs_are_usage_errors(capsys, tmp_path, target):
    (tmp_path / "afile").write_text("a file, not a folder")
    code, _, err = run(capsys, "stats", "resnet18", "-o", target.format(tmp=tmp_path))
    assert code == 2 and "resdsl: error: cannot use" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_unreadable_specs_are_usage_errors(capsys, tmp_path):
    code, _, err = run(capsys, "check", str(SPECS / "std"))
    assert code == 2 and "is a folder" in err
    code, _, err = run(capsys, "check", "b" * 300)  # longer than a file name may be
    assert code == 2 and "Traceback" not in err


def test_output_may_not_overwrite_the_spec(capsys, tmp_path):
    spec = tmp_path / "r.res"
    spec.write_text((SPECS / "resnet20_cifar.res").read_text())
    before = spec.read_bytes()
    code, _, err = run(capsys, "compile", str(spec), "--target", "torch", "-o", str(spec))
    assert code == 2 and "would overwrite an input" in err
    assert spec.read_bytes() == before


@pytest.mark.parametrize("seed", ["-1", str(2**63), "1.5"])
def test_seeds_torch_cannot_take_are_usage_errors(seed, capsys):
    code, out, err = run(capsys, "compile", "resnet20_cifar", "--target", "torch", "--seed", seed)
    assert code == 2 and out == "" and err.startswith("resdsl: error: --seed: ")
