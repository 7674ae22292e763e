"""`dag-factory plan`: what a spec change does to the DAGs, before it is merged.

The pipeline follows the data: `sources` (the base specs from git or a folder) -> `sides` (both
sides built with the real builders) -> `describe` (DAG object -> plain, comparable data) ->
`diff` (two descriptions -> changes, pure) -> `render` (text, markdown, json). `graph` draws
one DAG's description for `dag-factory render` (text, mermaid).
"""
