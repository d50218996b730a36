"""Text pre-training objectives of the one trainer: ``mlm`` (whole-word, span and concept-span masking), ``rtd``
(ELECTRA replaced-token detection) and ``distill`` (a compact student matching a teacher).

They read the ``text`` field of a text dataset (``text-corpus``, :mod:`medvl.train.data.text_corpus`) and train the
model's ``text`` tower; masking is in :mod:`.masking`. Each registers itself in ``OBJECTIVES`` on import.
"""
