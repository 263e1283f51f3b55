"""Sentence splitting and prose quality (pipeline/text.py), used for snippets, coverage, the
summary gate and the offline model."""

from __future__ import annotations

import pytest

from pipeline.text import (
    citable_sentences,
    count_substantive_sentences,
    ends_sentence,
    fence_code,
    is_citable,
    is_prose,
    is_substantive,
    split_sentences,
    split_units,
    word_count,
)


def test_english_sentences_with_abbreviations_initials_and_numbers():
    text = (
        "Dr. Smith arrived at 3.30 p.m. on Monday. He met J. R. R. Tolkien's editor, e.g. the "
        "one from Oxford! Was it raining? Yes... it was. The U.S. team won 2.5 points."
    )
    assert split_sentences(text) == [
        "Dr. Smith arrived at 3.30 p.m. on Monday.",
        "He met J. R. R. Tolkien's editor, e.g. the one from Oxford!",
        "Was it raining?",
        "Yes... it was.",
        "The U.S. team won 2.5 points.",
    ]


def test_quotes_and_brackets_stay_with_their_sentence():
    assert split_sentences('He said "stop." Then (after a pause) he left.') == [
        'He said "stop."',
        "Then (after a pause) he left.",
    ]


def test_cjk_punctuation_splits_without_spaces():
    text = "谷歌在2014年收购了DeepMind。这款产品意义重大！它能学习吗？“能。”研究人员说。"
    assert split_sentences(text) == [
        "谷歌在2014年收购了DeepMind。",
        "这款产品意义重大！",
        "它能学习吗？",
        "“能。”",
        "研究人员说。",
    ]


def test_blank_lines_always_separate():
    assert split_sentences("A heading without a period\n\nBody text follows here.") == [
        "A heading without a period",
        "Body text follows here.",
    ]


def test_substance():
    assert not is_substantive("Read more.")
    assert is_substantive("The compiler now reports unexpected cfg names by default.")
    assert is_substantive("研究人员表示这款计算机能够用自己的记忆学习新知识。")
    assert count_substantive_sentences("Short. " * 5 + "This one has six words in it.") == 1


# --- units: bullets, pilcrows, code fences ---------------------------------------------------
def test_list_items_and_paragraph_breaks_are_separate_units():
    text = (
        "Bundles are available: • redis: for using Redis as a broker. • sqs: for using SQS "
        "¶ The list ends here. Then prose goes on."
    )
    units = split_units(text)
    assert [(u.text, u.listed) for u in units] == [
        ("Bundles are available:", False),
        ("redis: for using Redis as a broker.", True),
        ("sqs: for using SQS", True),
        ("The list ends here.", False),
        ("Then prose goes on.", False),
    ]


def test_a_fenced_code_block_is_one_unit_never_a_sentence():
    text = "Install it:\n\n```\npip install x. Then run\n```\n\nAfter the code. Another one."
    units = split_units(text)
    assert [u.code for u in units] == [False, True, False, False]
    assert units[1].text == "```\npip install x. Then run\n```"
    assert not is_citable(units[1])
    assert fence_code("a = 1\n```b```") == "```\na = 1\n'''b'''\n```"  # cannot close early


def test_a_quotation_holds_its_sentences_together():
    assert split_sentences("He said “Stop. Now.” and left. Then he came back.") == [
        "He said “Stop. Now.” and left.",
        "Then he came back.",
    ]
    assert split_sentences("Il a dit « Non. Jamais. » et il est parti. Voilà.") == [
        "Il a dit « Non. Jamais. » et il est parti.",
        "Voilà.",
    ]
    # German quotes open with „ and close with “; an unclosed quote does not swallow the text
    assert split_sentences("Er sagte „Nein. Nie.“ und ging. Dann kam er.") == [
        "Er sagte „Nein. Nie.“ und ging.",
        "Dann kam er.",
    ]
    assert split_sentences("“An open quote. It never closes. " + "Filler words here. " * 40)[1] == (
        "It never closes."
    )


def test_german_and_french_abbreviations_and_dates():
    text = (
        "Am 3. Mai 2024 beschloss die Regierung z. B. neue Regeln. Das Gesetz gilt ab dem "
        "1. Januar. M. Dupont a voté contre, cf. le compte rendu. La loi est adoptée."
    )
    assert split_sentences(text) == [
        "Am 3. Mai 2024 beschloss die Regierung z. B. neue Regeln.",
        "Das Gesetz gilt ab dem 1. Januar.",
        "M. Dupont a voté contre, cf. le compte rendu.",
        "La loi est adoptée.",
    ]


# --- prose quality ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "SELECT avg(n) - stddev(n) AS lower_bound FROM unnest(array[2, 3, 5]) AS n;",
        "lower_bound │ upper_bound ───────┼─────── 1.25 │ 7.41",
        "app = Celery('hello', broker='amqp://guest@localhost//') @app.task def hello():",
        "$ pip install 'httpx[cli]' # The command line client is an optional dependency.",
        ">>> r = httpx.get('https://www.example.org/') >>> r.status_code 200",
        "RabbitMQ, Redis, Amazon SQS, Google Pub/Sub, Prefork, Eventlet, gevent, Django ORM",
        "a ≠ 0 , there are two solutions to a x 2 + b x + c = 0 and they are x = − b ± b 2 .",
        "word " * 61 + "end.",
    ],
    ids=["sql", "result-table", "python", "shell", "repl", "names", "math", "run-on"],
)
def test_code_tables_name_lists_math_and_run_ons_are_not_prose(text):
    assert not is_prose(text)
    assert not is_substantive(text)


@pytest.mark.parametrize(
    "text",
    [
        "HTTPX is a fully featured HTTP client library for Python 3.",
        "The most recent version supports Redis 7.2, 7.4, 8.0 and 8.2 on every platform.",
        "Les députés ont adopté le projet de loi sur le renseignement, mardi 5 mai.",
        "Die Regierung hat am Mittwoch ein neues Gesetz für den Datenschutz beschlossen.",
        "这款产品具有极其重要的意义，因为它不需要人类来教它就能回答问题。",
    ],
)
def test_prose_in_several_languages_is_substantive_and_citable(text):
    assert is_prose(text) and is_substantive(text) and is_citable(text)


def test_citable_needs_an_end_balanced_quotes_and_no_links():
    assert is_citable("The queue handles 1.5 million messages per second.")
    assert not is_citable("Villagers will harvest crops and plant new ones")  # no end
    assert not is_citable("Which now allows us to use the client from the shell...")  # trails off
    assert not is_citable("“As the drug kicked in, the staff tried to cool her down.")  # open quote
    assert not is_citable("Read the whole guide at https://example.org/guide right now.")
    assert ends_sentence("It said “stop.”") and not ends_sentence("Truncated text …")
    # pieces of a sentence cut by code or markup would join their neighbours in a summary
    assert not is_citable("will install only the dependencies for PDF and DOCX files.")
    assert not is_citable("Everyone else might be better off with the Xbox One S.")
    assert not is_citable("Use it for parsing, scraping, indexing, testing, etc.")
    assert is_citable("The index answered vector queries over embeddings in 38 ms.")
    assert split_sentences("It took 38 ms. Ms. Lee was pleased. No. 5 won.") == [
        "It took 38 ms.",
        "Ms. Lee was pleased.",
        "No. 5 won.",
    ]
    # the splitter never ends a sentence before a lower-case word, so neither may a summary
    assert not is_citable("iPhone sales grew by a third in the last quarter of the year.")
    assert is_citable("Sales of the iPhone grew by a third in the last quarter of the year.")


def test_citable_sentences_are_distinct_and_in_order():
    texts = [
        "The queue handles 1.5 million messages per second. Short one.",
        "• The queue handles 1.5 million messages per second! ¶ Consumers ack late "
        "to survive every crash.",
        "```\ncode = 1\n``` The queue handles 1.5 million messages each second.",
    ]
    assert citable_sentences(texts) == [
        "The queue handles 1.5 million messages per second.",
        "Consumers ack late to survive every crash.",
    ]
    assert word_count("Two words") == 2 and word_count("这款产品") == 2
