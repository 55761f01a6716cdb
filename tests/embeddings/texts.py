"""Texts the embedding tests and bench/embeddings.py share."""

# (a, b): the same meaning in other words.
PARAPHRASES = [
    ("How do I reset my password?", "I forgot my password and need to change it."),
    ("The cat sat on the mat.", "A cat was sitting on a rug."),
    ("What time does the office open?", "When are the office's opening hours?"),
    (
        "The invoice must be paid within 30 days.",
        "Payment of the bill is due in thirty days.",
    ),
    ("He plays guitar in a rock band.", "He is the guitarist of a rock group."),
    ("Upload a PDF file to the store.", "Add a PDF document to the store."),
    ("The meeting was moved to Friday.", "The meeting has been rescheduled to Friday."),
    ("Heavy rain flooded the streets.", "The roads were under water after the storm."),
]

# Each pair's first text with every other pair's second text.
UNRELATED = [
    (a, b)
    for i, (a, _) in enumerate(PARAPHRASES)
    for j, (_, b) in enumerate(PARAPHRASES)
    if i != j
]

# (question, passage that answers it) among PASSAGES.
QUESTIONS = [
    ("How many days of paid leave do employees get?", 0),
    ("What should I do if the server runs out of disk space?", 1),
    ("Which planet is the largest in the solar system?", 2),
    ("How do you make bread rise?", 3),
    ("Who may read the metrics endpoint?", 4),
]

PASSAGES = [
    "Vacation policy: every employee gets 25 days of paid leave per year. Unused "
    "days carry over to the next year, up to a maximum of five. Requests go to "
    "your manager at least two weeks ahead.",
    "When the disk that holds the data directory is nearly full, uploads are "
    "refused with a 507 status and no partial file is left behind. Free some "
    "space or move the data directory to a larger volume, then retry the upload.",
    "Jupiter is the largest planet in the solar system: more than eleven times "
    "the diameter of the Earth and twice as massive as all the other planets "
    "combined. It is a gas giant made mostly of hydrogen and helium.",
    "Yeast feeds on the sugars in flour and gives off carbon dioxide; the gas is "
    "trapped by the gluten network, so the dough rises. Keep it somewhere warm, "
    "covered, for an hour or two until it has doubled in size.",
    "The metrics endpoints answer to the admin API key or the metrics bearer "
    "token; no address may read them without a credential unless it is listed "
    "in the allowed networks, which is empty by default.",
    "The committee met on Tuesday to review the budget for the coming year. After "
    "a long discussion about rising energy costs, the members agreed to postpone "
    "the purchase of new vehicles and to renegotiate the cleaning contract.",
    "Photosynthesis converts light energy into chemical energy. In the "
    "chloroplasts, chlorophyll absorbs light, water is split into oxygen, and "
    "carbon dioxide is fixed into sugars through the Calvin cycle.",
    "To install the command-line tool, download the archive for your platform, "
    "unpack it into a folder on your PATH and run it once with --help to check "
    "that it works. Updates are announced on the mailing list.",
]

# About 2,300 characters of plain prose: over MiniLM's 256-token window.
LONG_TEXT = " ".join(PASSAGES)
