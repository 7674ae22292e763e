"""Spec loading and validation: YAML files in, typed ModelSpecs and located errors out."""

from dag_factory.specs.errors import SpecError, format_errors
from dag_factory.specs.loader import LoadResult, load_specs
from dag_factory.specs.model import ModelSpec

__all__ = ["LoadResult", "ModelSpec", "SpecError", "format_errors", "load_specs"]
