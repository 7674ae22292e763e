"""A run's conf is checked when a task reads it: a bad value fails the task and says why."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dag_factory.runtime.conf import CONF_KEYS, conf_doc, conf_value


def run(conf):
    return SimpleNamespace(conf=conf)


@pytest.mark.parametrize("key,value", [
    ("dataset_uri", "s3://ml-data/x"), ("version", "v3"), ("hyperparameters", {"depth": 3}),
    ("gates", ["auc >= 0.8", "loss < 0.2"]), ("partitions", [0, 3]), ("batch_size", 1),
])
def test_good_values_pass(key, value):
    assert conf_value(run({key: value}), key) == value


@pytest.mark.parametrize("key,value,expected", [
    ("dataset_uri", 7, "must be a string, got 7"),
    ("hyperparameters", [1], "must be an object, got [1]"),
    ("gates", ["auc is high"], "must be a list of gate strings like 'auc >= 0.8', got [\"auc is high\"]"),
    ("partitions", [0, -1], "must be a list of integers >= 0, got [0, -1]"),
    ("partitions", "0,1", "must be a list of integers >= 0, got \"0,1\""),
    ("batch_size", 0, "must be an integer >= 1, got 0"),
    ("batch_size", True, "must be an integer >= 1, got true"),
])
def test_bad_values_fail_the_task_naming_key_and_value(key, value, expected):
    with pytest.raises(AirflowFailException, match="run conf '%s' %s" % (key, _re(expected))):
        conf_value(run({key: value}), key)


def test_missing_or_empty_means_not_given():
    for conf in (None, {}, {"version": ""}, {"version": None}):
        assert conf_value(run(conf), "version") is None


def test_a_conf_that_is_not_an_object_fails():
    with pytest.raises(AirflowFailException, match="must be a JSON object"):
        conf_value(run(["v3"]), "version")


def test_every_dag_kind_documents_its_keys():
    for kind, keys in CONF_KEYS.items():
        assert all(f"`{k}`" in conf_doc(kind) for k in keys)


def _re(text: str) -> str:
    import re

    return re.escape(text)
