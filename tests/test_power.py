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
    (AGX_ORIN_JP51, "VIN_SYS_5V0", 4032, {"VDD_GPU_SOC": (2399, 2399), "VDD_CPU_CV": (400, 400),
                                           "VIN_SYS_5V0": (4032, 4032), "VDDQ_VDD2_1V8AO": (301, 301)}, 12, (1282, 62795)),
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


def test_energy_per_image():
    samples = [parse_tegrastats(ORIN_NANO_JP6)] * 4  # 6.626 W
    out = power_summary(samples, seconds=2.0, images=1000)
    assert out["avg_power_w"] == pytest.approx(6.626)
    assert out["energy_per_image_mj"] == pytest.approx(6.626 * 2.0 / 1000 * 1000)  # W x s / images, in mJ
    assert power_summary([], 1.0, 10)["avg_power_w"] is None
