"""The 27 coarse COCO-Stuff classes (IIC / STEGO / JAFAR) and the fine -> coarse table.

Fine ids are those of the raw ``stuffthingmaps_trainval2017`` PNGs (0-181); coarse ids
0-11 are the thing super-categories, 12-26 the stuff super-categories.
"""

COARSE_CLASSES = (
    "electronic", "appliance", "food-things", "furniture-things", "indoor", "kitchen", "accessory",
    "animal", "outdoor", "person", "sports", "vehicle",
    "ceiling", "floor", "food-stuff", "furniture-stuff", "raw-material", "textile", "wall", "window",
    "building", "ground", "plant", "sky", "solid", "structural", "water",
)

COARSE_PALETTE = [[(37 * i) % 256, (91 * i + 64) % 256, (151 * i + 128) % 256] for i in range(len(COARSE_CLASSES))]

# FINE_TO_COARSE[fine_id] = coarse_id
FINE_TO_COARSE = (
    9, 11, 11, 11, 11, 11, 11, 11, 11, 8, 8, 8, 8, 8, 8, 7, 7, 7, 7, 7,  # fine ids 0-19
    7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6, 10, 10, 10, 10, 10, 10, 10,  # fine ids 20-39
    10, 10, 10, 5, 5, 5, 5, 5, 5, 5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2,  # fine ids 40-59
    2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 1, 1, 1,  # fine ids 60-79
    1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 4, 17, 17, 22, 20, 20, 22, 15, 25, 16,  # fine ids 80-99
    13, 12, 12, 17, 17, 23, 15, 15, 17, 15, 21, 15, 25, 13, 13, 13, 13, 13, 22, 26,  # fine ids 100-119
    14, 14, 15, 22, 21, 21, 24, 20, 22, 15, 17, 16, 15, 22, 24, 21, 17, 25, 16, 21,  # fine ids 120-139
    17, 22, 16, 21, 21, 25, 21, 26, 21, 24, 20, 17, 14, 21, 26, 15, 23, 20, 21, 24,  # fine ids 140-159
    15, 24, 22, 25, 15, 20, 17, 17, 22, 14, 18, 18, 18, 18, 18, 18, 18, 26, 26, 19,  # fine ids 160-179
    19, 24,  # fine ids 180-181
)
assert len(FINE_TO_COARSE) == 182 and max(FINE_TO_COARSE) == len(COARSE_CLASSES) - 1
