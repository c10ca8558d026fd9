"""The pure analytics core: schemes, rule expressions and the RFM query definition.

Nothing here reads files, opens connections, looks at the clock or configures logging.
"""
