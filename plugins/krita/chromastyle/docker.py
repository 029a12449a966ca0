"""Settings ▸ Dockers ▸ Chromastyle: the options, and a Run button."""
from krita import DockWidget, Krita

from . import options as opts
from .extension import client, run
from .qt import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QPushButton, QSpinBox, QVBoxLayout,
                 QWidget)


class ChromaStyleDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("Chromastyle")
        body = QWidget(self)
        form = QFormLayout()
        self.style = QComboBox()
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 1.0)
        self.strength.setSingleStep(0.05)
        self.hint = QComboBox()
        self.keep = QComboBox()
        self.keep.addItems(["none", "luminance", "colors"])
        self.tileable = QCheckBox("keep textures seamless")
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2 ** 31 - 1)
        self.seed.setSpecialValueText("canonical")
        refresh = QPushButton("Refresh styles and layers")
        refresh.clicked.connect(self.refresh)
        go = QPushButton("Colorize && Stylize")
        go.clicked.connect(self.run)
        for label, widget in (("Style", self.style), ("Strength", self.strength), ("Hint layer", self.hint),
                              ("Keep", self.keep), ("", self.tileable), ("Seed", self.seed)):
            form.addRow(label, widget)
        layout = QVBoxLayout(body)
        layout.addLayout(form)
        layout.addWidget(refresh)
        layout.addWidget(go)
        self.setWidget(body)
        self.load()

    def load(self):
        s = opts.load(Krita.instance())
        self.style.clear()
        self.style.addItem(s["style"], s["style"])
        self.strength.setValue(s["strength"])
        self.keep.setCurrentText(s["keep"])
        self.tileable.setChecked(s["tileable"])
        self.seed.setValue(s["seed"])

    def refresh(self):
        """Styles from the worker's model; layers of the active document for the hint layer."""
        current = self.style.currentData() or "natural"
        try:
            styles = client().styles()
        except Exception as e:  # shown in place of the list, the docker keeps working
            styles = [{"slug": current, "name": f"{current} (worker: {e})"}]
        self.style.clear()
        for s in styles:
            self.style.addItem(s["name"], s["slug"])
        self.style.setCurrentIndex(max(0, self.style.findData(current)))
        self.hint.clear()
        self.hint.addItem("(none)", "")
        doc = Krita.instance().activeDocument()
        if doc:
            stack = list(doc.topLevelNodes())
            while stack:
                node = stack.pop()
                if node.type() == "paintlayer":
                    self.hint.addItem(node.name(), node.name())
                stack.extend(node.childNodes())

    def settings(self):
        return {"style": self.style.currentData() or "natural", "strength": self.strength.value(),
                "hint_layer": self.hint.currentData() or "", "keep": self.keep.currentText(),
                "tileable": self.tileable.isChecked(), "seed": self.seed.value()}

    def run(self):
        opts.save(Krita.instance(), self.settings())
        run(settings=self.settings(), parent=self)

    def canvasChanged(self, canvas):
        pass
