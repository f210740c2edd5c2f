"""Prompt pairs (present, absent) for zero-shot classification of each finding.

Phrased the way reports phrase them; the score of an image is
cos(image, present) - cos(image, absent). Several phrasings per side are averaged in embedding
space (prompt ensembling, as CLIP does).
"""

FINDING_PROMPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Atelectasis": (
        ("there is atelectasis.", "bibasilar atelectasis."),
        ("no atelectasis.", "the lungs are clear."),
    ),
    "Cardiomegaly": (
        ("the heart is enlarged.", "cardiomegaly."),
        ("the heart size is normal.", "no cardiomegaly."),
    ),
    "Consolidation": (
        ("there is consolidation.", "focal consolidation is present."),
        ("no focal consolidation.", "the lungs are clear."),
    ),
    "Edema": (
        ("there is pulmonary edema.", "pulmonary edema."),
        ("no pulmonary edema.", "no evidence of edema."),
    ),
    "Enlarged Cardiomediastinum": (
        ("the cardiomediastinal silhouette is enlarged.",),
        ("the cardiomediastinal silhouette is normal.",),
    ),
    "Fracture": (("there is a rib fracture.",), ("no fracture is seen.",)),
    "Lung Lesion": (
        ("there is a pulmonary nodule.", "a lung nodule is seen."),
        ("no pulmonary nodules.", "no focal lesion."),
    ),
    "Lung Opacity": (
        ("there is an opacity in the lung.", "airspace opacity."),
        ("no opacity.", "the lungs are clear."),
    ),
    # "Absent" = abnormal findings in the words reports use (reports never say "an abnormality").
    "No Finding": (
        ("no acute cardiopulmonary process.", "the lungs are clear."),
        (
            "there is a pleural effusion.",
            "focal consolidation is present.",
            "the heart is enlarged.",
        ),
    ),
    "Pleural Effusion": (
        ("there is a pleural effusion.", "pleural effusion."),
        ("no pleural effusion.", "there is no effusion."),
    ),
    "Pleural Other": (("there is pleural thickening.",), ("no pleural abnormality.",)),
    "Pneumonia": (
        ("findings are concerning for pneumonia.", "findings are consistent with pneumonia."),
        ("no evidence of pneumonia.", "no radiographic evidence of pneumonia."),
    ),
    "Pneumothorax": (
        ("there is a pneumothorax.", "pneumothorax."),
        ("no pneumothorax.", "there is no pneumothorax."),
    ),
    # Reports name the device and never state its absence: "absent" = a device-free normal study.
    "Support Devices": (
        (
            "an endotracheal tube is in standard position.",
            "a right internal jugular central venous catheter terminates in the svc.",
            "left chest wall pacemaker in place.",
        ),
        ("no acute cardiopulmonary process.", "the lungs are clear."),
    ),
}
