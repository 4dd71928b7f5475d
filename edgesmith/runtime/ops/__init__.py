"""Built-in custom-op routes (see ``edgesmith.runtime.custom_ops``); one op family per module."""
