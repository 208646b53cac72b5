"""benchmarks/machine.py: the machine every speed report names."""

from __future__ import annotations

from tests.benchmarks.scripts import load_script

machine_module = load_script("machine")

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu vme

processor\t: 1
model name\t: Some Other CPU
"""


def test_the_processor_is_read_from_the_first_block_with_family_and_model(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert machine_module.cpu_model(path) == "AMD EPYC (family 26, model 2)"
    path.write_text("processor\t: 0\nmodel name\t: ARM Neoverse\n")
    assert machine_module.cpu_model(path) == "ARM Neoverse"


def test_a_machine_without_cpuinfo_still_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(machine_module.platform, "processor", lambda: "")
    assert machine_module.cpu_model(tmp_path / "absent") is None
    report = machine_module.machine(load_average=[1.0, 0.5, 0.2])
    assert report["cpus"] >= 1 and report["python"].count(".") == 2
    assert report["load_average"] == [1.0, 0.5, 0.2]
    assert report["memory_gib"] is None or report["memory_gib"] > 0
