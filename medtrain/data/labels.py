"""The 14 CheXpert-style finding labels, in the column order of the MIMIC-CXR label CSVs."""

CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

# Label values as the public CSVs write them. A blank cell (not mentioned) is kept as None,
# distinct from 0.0 (negative) and -1.0 (uncertain).
POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
