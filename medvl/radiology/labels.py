"""Organ label ids of the TotalSegmentator v2 ``total`` task (multilabel map), and organ groups.

Written from the public description of the TotalSegmentator v2 class map (label id -> structure name); only the
abdominal and thoracic structures medvl crops around are listed, plus the ones present in the bundled example map.
"""

from __future__ import annotations

from medvl.errors import ConfigError

__all__ = ["ORGAN_GROUPS", "TOTALSEG_V2", "label_name", "resolve_label_ids"]

#: TotalSegmentator v2 multilabel id -> structure name
TOTALSEG_V2: dict[int, str] = {
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "liver",
    6: "stomach",
    7: "pancreas",
    8: "adrenal_gland_right",
    9: "adrenal_gland_left",
    10: "lung_upper_lobe_left",
    11: "lung_lower_lobe_left",
    12: "lung_upper_lobe_right",
    13: "lung_middle_lobe_right",
    14: "lung_lower_lobe_right",
    15: "esophagus",
    16: "trachea",
    17: "thyroid_gland",
    18: "small_bowel",
    19: "duodenum",
    20: "colon",
    21: "urinary_bladder",
    22: "prostate",
    23: "kidney_cyst_left",
    24: "kidney_cyst_right",
    25: "sacrum",
    29: "vertebrae_L3",
    30: "vertebrae_L2",
    31: "vertebrae_L1",
    32: "vertebrae_T12",
    33: "vertebrae_T11",
    51: "heart",
    52: "aorta",
    63: "inferior_vena_cava",
    64: "portal_vein_and_splenic_vein",
    79: "spinal_cord",
    86: "autochthon_left",
    87: "autochthon_right",
    88: "iliopsoas_left",
    89: "iliopsoas_right",
    117: "costal_cartilages",
}

#: group name -> member structure names
ORGAN_GROUPS: dict[str, tuple[str, ...]] = {
    "kidneys": ("kidney_right", "kidney_left"),
    "kidneys_with_cysts": ("kidney_right", "kidney_left", "kidney_cyst_left", "kidney_cyst_right"),
    "lungs": ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
              "lung_lower_lobe_right"),
    "adrenal_glands": ("adrenal_gland_right", "adrenal_gland_left"),
}

_BY_NAME = {name: i for i, name in TOTALSEG_V2.items()}


def label_name(label_id: int) -> str:
    """Structure name of a TotalSegmentator v2 id (``"label_<id>"`` when not in the table)."""
    return TOTALSEG_V2.get(int(label_id), f"label_{int(label_id)}")


def resolve_label_ids(labels: list[int | str] | tuple[int | str, ...]) -> list[int]:
    """Label ids for a mix of ids, numeric strings, structure names and group names (sorted, unique)."""
    ids: set[int] = set()
    for item in labels:
        if isinstance(item, int) or (isinstance(item, str) and item.strip().isdigit()):
            ids.add(int(item))
        elif item in ORGAN_GROUPS:
            ids.update(_BY_NAME[n] for n in ORGAN_GROUPS[item])
        elif item in _BY_NAME:
            ids.add(_BY_NAME[item])
        else:
            known = sorted([*ORGAN_GROUPS, *_BY_NAME])
            raise ConfigError(f"unknown organ {item!r}; known names: {', '.join(known)} (or give label ids)")
    return sorted(ids)
