"""Multi-label metrics, the Avalanche metric plugin that reports them, and the results files."""
