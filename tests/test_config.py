import pytest
from transformers import BertConfig, RobertaConfig

from pipeline.config import ConfigError, check_lengths, from_dict, load_params


def test_defaults_and_repo_params_load():
    params = load_params("params.yaml")
    assert params.finetune.lr == pytest.approx(5e-5) and params.finetune.epochs == 3
    assert params.task.demo.enabled and params.task.demo.train == 1000
    assert params.pretrain.source in ("none", "task", "in_domain", "cross_domain")


def test_code_defaults_are_params_yaml():
    """One home for defaults: a key left out of params.yaml means what params.yaml says, never a second value."""
    import yaml

    from fixtures import ROOT

    def leaves(d, prefix=""):
        for k, v in d.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]

    shipped = dict(leaves(yaml.safe_load((ROOT / "params.yaml").read_text())))
    code = dict(leaves(from_dict({}).model_dump()))
    assert set(shipped) == set(code), set(shipped) ^ set(code)
    differ = {k: (shipped[k], code[k]) for k in shipped if shipped[k] != code[k]}
    assert not differ, f"params.yaml vs pipeline/config.py defaults: {differ}"


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key `finetune.learning_rate`") as exc:
        from_dict({"finetune": {"learning_rate": 1e-5}})
    assert "Did you mean" in str(exc.value) or "Known keys: lr, epochs" in str(exc.value)
    with pytest.raises(ConfigError, match=r"Did you mean `pretrain.max_tokens`"):
        from_dict({"pretrain": {"max_token": 10}})


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"`finetune.epochs` must be int, got 'three'"):
        from_dict({"finetune": {"epochs": "three"}})
    with pytest.raises(ConfigError, match=r"`task.demo.enabled` must be bool"):
        from_dict({"task": {"demo": {"enabled": "yes"}}})


def test_yaml_style_float_strings_are_floats():
    # PyYAML reads `2e-5` as a string (YAML 1.1); it is a learning rate all the same
    assert from_dict({"finetune": {"lr": "2e-5"}}).finetune.lr == pytest.approx(2e-5)


def test_unknown_source_lists_choices():
    with pytest.raises(ConfigError, match=r"`pretrain.source` is 'wiki'; it must be one of none, task"):
        from_dict({"pretrain": {"source": "wiki"}})


def test_head_tokens_must_fit_for_head_tail():
    with pytest.raises(ConfigError, match="finetune.head_tokens"):
        from_dict({"model": {"max_length": 128}, "finetune": {"truncation": "head_tail", "head_tokens": 128}})


def test_max_length_past_position_embeddings_is_a_clear_error():
    params = from_dict({"model": {"max_length": 600}})
    with pytest.raises(ConfigError, match=r"`model.max_length` is 600.*512 usable position embeddings"):
        check_lengths(params, BertConfig(max_position_embeddings=512))
    check_lengths(from_dict({"model": {"max_length": 512}}), BertConfig(max_position_embeddings=512))


def test_roberta_position_offset_is_counted():
    config = RobertaConfig(max_position_embeddings=514, pad_token_id=1)
    check_lengths(from_dict({"model": {"max_length": 512}}), config)
    with pytest.raises(ConfigError, match="512 usable"):
        check_lengths(from_dict({"model": {"max_length": 513}}), config)


@pytest.mark.parametrize("params, key", [({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"),
                                         ({"task": {"seed": -5}}, "task.seed"),
                                         ({"pretrain": {"seed": 2**40}}, "pretrain.seed"),
                                         ({"train": {"num_workers": -1}}, "train.num_workers")])
def test_ranges_that_numpy_and_torch_enforce_are_checked_first(params, key):
    with pytest.raises(ConfigError, match=rf"`{key}` is -?\d+; it must be"):
        from_dict(params)
    assert from_dict({"seed": 2**32 - 1}).seed == 2**32 - 1  # numpy's largest seed is accepted
