"""tegrastats / nvpmodel / jetson_clocks parsing on real output lines, and power arithmetic."""
import pytest

from edgeres.bench.power import (
    parse_jetson_clocks,
    parse_nvpmodel,
    parse_tegrastats,
    power_summary,
)

# Verbatim lines captured on devices (sources in /tmp/notes/research.md section 6).
NANO_JP4 = ("RAM 2020/3964MB (lfb 19x4MB) SWAP 43/1982MB (cached 1MB) CPU [100%@1479,100%@1479,100%@1479,100%@1479] "
            "EMC_FREQ 0% GR3D_FREQ 99% PLL@41.5C CPU@48C PMIC@100C GPU@63C AO@54.5C thermal@48.25C POM_5V_GPU 8949/8742 "
            "POM_5V_IN 3227/3086 POM_5V_CPU 3148/3134")
XAVIER_NX_JP46 = ("RAM 1748/7772MB (lfb 377x4MB) SWAP 0/3886MB (cached 0MB) CPU [100%@1420,100%@1420,100%@1420,100%@1420,"
                  "100%@1420,100%@1420] EMC_FREQ 0% GR3D_FREQ 99% AO@50.5C GPU@53C PMIC@100C AUX@51C CPU@53C "
                  "thermal@52.35C VDD_IN 12221/13950 VDD_CPU_GPU_CV 8812/10241 VDD_SOC 1333/1412")
NANO_JP4_IRAM = ("RAM 1655/3956MB (lfb 311x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) CPU [12%@102,10%@102,"
                 "11%@102,12%@102] EMC_FREQ 3%@1600 GR3D_FREQ 0%@76 APE 25 PLL@36.5C CPU@39C iwlwifi@44C PMIC@50C GPU@37C "
                 "AO@47.5C thermal@38C POM_5V_IN 2132/2132 POM_5V_GPU 78/78 POM_5V_CPU 275/275")
AGX_XAVIER_JP4 = ("RAM 4722/7844MB (lfb 1x512kB) CPU [55%@2035,14%@2034,27%@2034,55%@2035,47%@2035,45%@2035] SWAP "
                  "149/1024MB (cached 7MB) EMC_FREQ 2%@1866 GR3D_FREQ 0%@1300 APE 150 MTS fg 0% bg 0% BCPU@-45C MCPU@-45C "
                  "GPU@-51C PLL@45C AO@47.5C Tboard@37C Tdiode@46.75C PMIC@100C thermal@46.4C VDD_IN 14025/14416 "
                  "VDD_CPU 2209/2538 VDD_GPU 6854/6903 VDD_SOC 1371/1370 VDD_WIFI 19/19 NVENC 716 NVDEC 716 VDD_DDR 2702/2702")
AGX_ORIN_JP51 = ("04-24-2023 00:01:24 RAM 1282/62795MB (lfb 15152x4MB) SWAP 0/31398MB (cached 0MB) CPU [0%@729,0%@729,"
                 "0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@0 "
                 "GR3D2_FREQ 0%@0 VIC_FREQ 729 APE 174 CV0@-256C CPU@42.593C Tboard@32C SOC2@39.343C Tdiode@33.25C "
                 "SOC0@39.375C CV1@-256C GPU@-256C tj@42.593C SOC1@40.468C CV2@-256C VDD_GPU_SOC 2399mW/2399mW "
                 "VDD_CPU_CV 400mW/400mW VIN_SYS_5V0 4032mW/4032mW NC 0mW/0mW VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW")
# Line formats from rbonghi/jetson_stats: tests/tegrastats (its AGX Xavier JetPack 5 simulator line, rails without a
# VDD_ prefix and SYS5V) and jtop/tests/test_06_tegra_parse.py (a real AGX Orin JetPack 7.2 line, cur/avg/peak).
AGX_XAVIER_JP5 = ("RAM 407/15823MB (lfb 3702x4MB) SWAP 0/7911MB (cached 0MB) CPU [12%@2265,3%@2265,0%@2265,5%@2265,"
                  "1%@2265,0%@2265,2%@2265,9%@2265] EMC_FREQ 0%@2133 GR3D_FREQ 41%@1377 APE 150 MTS fg 0% bg 0% "
                  "AO@26.5C GPU@28C iwlwifi@30C Tdiode@31.25C PMIC@100C AUX@27C CPU@28C thermal@27.45C Tboard@27C "
                  "GPU 1155/1155 CPU 385/385 SOC 2502/2502 CV 0/0 VDDRQ 192/192 SYS5V 2692/2692")
AGX_ORIN_JP7 = ("07-25-2026 09:08:28 RAM 20642/62817MB (lfb 1x2MB) CPU [23%@2201,10%@2201,4%@2201,14%@2201,30%@2201,"
                "18%@2201,10%@2201,10%@2201,33%@2201,7%@2201,5%@2201,27%@2201] EMC_FREQ 3%@3199 GR3D_FREQ "
                "12%@[1300,1300] NVENC0 off NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off NVDLA0 off NVDLA1 off "
                "PVA0_FREQ off APE 174 cpu@52.968C/52.968C soc2@48.406C/48.406C soc0@49.531C/49.531C gpu@47.625C/47.625C "
                "VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW VIN_SYS_5V0 5500mW/5500mW/5500mW")
ORIN_NANO_JP6 = ("04-27-2026 15:00:54 RAM 779/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [0%@1344,0%@1344,0%@1344,"
                 "0%@1344,0%@1344,0%@1344] GR3D_FREQ 0% cpu@50.125C soc2@49.125C soc0@49.25C gpu@50.562C tj@50.562C "
                 "soc1@50.437C VDD_IN 6626mW/6625mW VDD_CPU_GPU_CV 1228mW/1230mW VDD_SOC 2380mW/2380mW")


@pytest.mark.parametrize("line, rail, total, rails, cores, ram", [
    (NANO_JP4, "POM_5V_IN", 3227, {"POM_5V_GPU": (8949, 8742), "POM_5V_IN": (3227, 3086), "POM_5V_CPU": (3148, 3134)},
     4, (2020, 3964)),
    (XAVIER_NX_JP46, "VDD_IN", 12221, {"VDD_IN": (12221, 13950), "VDD_CPU_GPU_CV": (8812, 10241),
                                       "VDD_SOC": (1333, 1412)}, 6, (1748, 7772)),
    (NANO_JP4_IRAM, "POM_5V_IN", 2132, {"POM_5V_IN": (2132, 2132), "POM_5V_GPU": (78, 78), "POM_5V_CPU": (275, 275)},
     4, (1655, 3956)),
    (AGX_XAVIER_JP4, "VDD_IN", 14025, {"VDD_IN": (14025, 14416), "VDD_CPU": (2209, 2538), "VDD_GPU": (6854, 6903),
                                       "VDD_SOC": (1371, 1370), "VDD_WIFI": (19, 19), "VDD_DDR": (2702, 2702)},
     6, (4722, 7844)),
    # AGX Orin / AGX Xavier JP5: no module-input rail, so the total is the sum of all rails (bug 4 of issue 11:
    # it used to be VIN_SYS_5V0 / SYS5V alone, one supply among several)
    (AGX_ORIN_JP51, None, 2399 + 400 + 4032 + 301, {"VDD_GPU_SOC": (2399, 2399), "VDD_CPU_CV": (400, 400),
                                                     "VIN_SYS_5V0": (4032, 4032), "VDDQ_VDD2_1V8AO": (301, 301)},
     12, (1282, 62795)),
    (AGX_XAVIER_JP5, None, 1155 + 385 + 2502 + 0 + 192 + 2692,
     {"GPU": (1155, 1155), "CPU": (385, 385), "SOC": (2502, 2502), "CV": (0, 0), "VDDRQ": (192, 192),
      "SYS5V": (2692, 2692)}, 8, (407, 15823)),
    (AGX_ORIN_JP7, None, 5139 + 3268 + 5500, {"VDD_GPU_SOC": (5139, 5139), "VDD_CPU_CV": (3268, 3268),
                                               "VIN_SYS_5V0": (5500, 5500)}, 12, (20642, 62817)),
    (ORIN_NANO_JP6, "VDD_IN", 6626, {"VDD_IN": (6626, 6625), "VDD_CPU_GPU_CV": (1228, 1230), "VDD_SOC": (2380, 2380)},
     6, (779, 7620)),
])
def test_real_tegrastats_lines(line, rail, total, rails, cores, ram):
    s = parse_tegrastats(line)
    assert (s.total_rail, s.total_mw, s.rails_mw) == (rail, total, rails)
    assert len(s.cpu) == cores and (s.ram_used_mb, s.ram_total_mb) == ram


def test_tegrastats_details():
    nano = parse_tegrastats(NANO_JP4_IRAM)
    assert nano.cpu[0] == (12, 102) and (nano.gpu_load_pct, nano.gpu_mhz, nano.emc_load_pct) == (0, 76, 3)
    assert nano.temps_c["GPU"] == 37.0 and nano.timestamp is None
    orin = parse_tegrastats(AGX_ORIN_JP51)
    assert orin.timestamp == "04-24-2023 00:01:24" and orin.temps_c["GPU"] == -256.0  # sensor off
    assert "NC" not in orin.rails_mw  # unconnected channel, repeated on AGX Orin
    assert parse_tegrastats(NANO_JP4).gpu_load_pct == 99 and parse_tegrastats(AGX_XAVIER_JP4).temps_c["BCPU"] == -45.0
    assert parse_tegrastats("RAM 1/2MB CPU [off,10%@300]").cpu == [None, (10, 300)]


def test_not_a_tegrastats_line():
    with pytest.raises(ValueError):
        parse_tegrastats("tegrastats: command not found")


def test_nvpmodel_and_jetson_clocks():
    text = "NVPM WARN: fan mode is not set!\nNV Power Mode: MODE_15W\n2\n"
    assert parse_nvpmodel(text) == {"name": "MODE_15W", "id": 2}
    with pytest.raises(ValueError):
        parse_nvpmodel("nothing here")
    clocks = parse_jetson_clocks("SOC family:tegra186  Machine:quill\nOnline CPUs: 0,3-5\n"
                                 "GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000\n"
                                 "EMC MinFreq=204000000 MaxFreq=1866000000 CurrentFreq=1866000000 FreqOverride=0\n")
    assert clocks["GPU"]["locked"] and not clocks["EMC"]["locked"] and clocks["EMC"]["MaxFreq"] == 1866000000


@pytest.mark.parametrize("line, rule", [
    (ORIN_NANO_JP6, "VDD_IN"), (NANO_JP4, "POM_5V_IN"),
    (AGX_ORIN_JP51, "sum of all rails (VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO): no module-input rail "
                    "(VDD_IN/POM_5V_IN)"),
    (AGX_XAVIER_JP5, "sum of all rails (GPU+CPU+SOC+CV+VDDRQ+SYS5V): no module-input rail (VDD_IN/POM_5V_IN)")])
def test_4_the_total_power_rule_is_recorded(line, rule):
    sample = parse_tegrastats(line)
    summary = power_summary([sample] * 3, seconds=1.5, images=30)
    assert sample.total_rule == summary["total_rule"] == rule
    assert summary["avg_power_w"] == pytest.approx(sample.total_mw / 1000)
    assert summary["energy_per_image_mj"] == pytest.approx(sample.total_mw / 1000 * 1.5 / 30 * 1000)


def test_energy_per_image():
    samples = [parse_tegrastats(ORIN_NANO_JP6)] * 4  # 6.626 W
    out = power_summary(samples, seconds=2.0, images=1000)
    assert out["avg_power_w"] == pytest.approx(6.626)
    assert out["energy_per_image_mj"] == pytest.approx(6.626 * 2.0 / 1000 * 1000)  # W x s / images, in mJ
    assert power_summary([], 1.0, 10)["avg_power_w"] is None
    no_rails = parse_tegrastats("RAM 1/2MB CPU [10%@300]")
    assert (no_rails.total_mw, no_rails.total_rule) == (None, None)
    assert power_summary([no_rails], 1.0, 10)["avg_power_w"] is None
