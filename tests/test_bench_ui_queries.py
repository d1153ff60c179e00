"""The UI's queries the partitions benchmark sends are valid documents of the installed Dagster.

``bench/ui_queries.py`` reads them out of the webapp bundle by pattern; a Dagster upgrade that
renames an operation or a fragment, or a bundle the pattern misreads, must fail here rather
than make the benchmark time an error answer. Validation against the GraphQL schema of
``dagster_graphql`` also proves every fragment the operation spreads came along.
"""

from __future__ import annotations

import graphql
import pytest
from dagster_graphql.schema import create_schema

from bench import ui_queries

OPERATIONS = sorted({op for queries in ui_queries.PAGES.values() for op, _ in queries})


@pytest.fixture(scope="module")
def schema() -> graphql.GraphQLSchema:
    return create_schema().graphql_schema


@pytest.mark.parametrize("operation", OPERATIONS)
def test_page_operation_is_a_valid_document(schema: graphql.GraphQLSchema,
                                            operation: str) -> None:
    document = graphql.parse(ui_queries.document(operation))
    names = [d.name.value for d in document.definitions
             if isinstance(d, graphql.OperationDefinitionNode)]
    assert names == [operation]
    assert graphql.validate(schema, document) == []


def test_placeholders_become_asset_keys() -> None:
    values = {"{key}": ["ccat", "p", "s"], "{keys}": [["a"], ["b"]], "{partition}": "k"}
    assert ui_queries.variables({"assetKey": "{key}", "assetKeys": ["{key}"],
                                 "partitionKey": "{partition}", "limit": 1000}, values) == {
        "assetKey": {"path": ["ccat", "p", "s"]}, "assetKeys": [{"path": ["ccat", "p", "s"]}],
        "partitionKey": "k", "limit": 1000}
    assert ui_queries.variables({"assetKeys": "{keys}"}, values) == {
        "assetKeys": [{"path": ["a"]}, {"path": ["b"]}]}
