"""The market mechanisms, one package each (see :mod:`offchain.framework` for what a package holds
and :mod:`offchain.registry` for the names): ``tariff`` and ``storage``."""
