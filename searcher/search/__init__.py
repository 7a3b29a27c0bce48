"""Search: a query to ranked documents (options, retrievers, fusion, filters, facets, the result page)."""
