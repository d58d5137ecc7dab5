"""Running things: the composition root (``train(cfg)``), config checks, the files a run writes,
its identity and its loggers (docs/architecture.md "Layout")."""
