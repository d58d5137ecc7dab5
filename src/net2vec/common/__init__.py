"""What every layer shares: content-keyed cached artifacts, the settings error, package versions
and the allocator setting (docs/architecture.md "Layout")."""
