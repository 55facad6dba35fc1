import pytest

from pipeline.text import special_layout, truncate_ids

CLS, SEP = 101, 102
IDS = [CLS, *range(1, 21), SEP]  # 20 text tokens


def test_short_input_is_unchanged():
    assert truncate_ids(IDS, 50, "head") == IDS


def test_head_keeps_the_first_tokens_and_specials():
    assert truncate_ids(IDS, 8, "head") == [CLS, 1, 2, 3, 4, 5, 6, SEP]


def test_tail_keeps_the_last_tokens_and_specials():
    assert truncate_ids(IDS, 8, "tail") == [CLS, 15, 16, 17, 18, 19, 20, SEP]


def test_head_tail_splits_the_room():
    assert truncate_ids(IDS, 8, "head_tail", head_tokens=2) == [CLS, 1, 2, 17, 18, 19, 20, SEP]
    # the paper's 128 + 382 for 512: head + tail fill max_length exactly
    long = [CLS, *range(1, 1001), SEP]
    cut = truncate_ids(long, 512, "head_tail", head_tokens=128)
    assert len(cut) == 512 and cut[1:129] == list(range(1, 129)) and cut[129:511] == list(range(619, 1001))


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="unknown truncation mode"):
        truncate_ids(IDS, 8, "middle")


def test_special_layout_of_a_bert_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    assert special_layout(AutoTokenizer.from_pretrained(tiny_model)) == (1, 1)
