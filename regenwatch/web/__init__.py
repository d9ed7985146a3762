"""The browser review workspace (``regenwatch review DIR --serve``)."""
