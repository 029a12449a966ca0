"""Chromastyle for Krita: colorize and stylize layers and animation frames.

Standard library + Krita's API + PyQt (through .qt) + the worker client (client.py, copied here
by `chromastyle install krita`). The model runs in the chromastyle worker process."""
from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita

from .docker import ChromaStyleDocker
from .extension import ChromaStyleExtension

Krita.instance().addExtension(ChromaStyleExtension(Krita.instance()))
Krita.instance().addDockWidgetFactory(
    DockWidgetFactory("chromastyle_docker", DockWidgetFactoryBase.DockRight, ChromaStyleDocker))
