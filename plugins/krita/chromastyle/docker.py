"""Settings ▸ Dockers ▸ Chromastyle: the options, and a Run button. The style list comes from the
worker's model as soon as the docker is shown (the worker is started if none runs)."""
from krita import DockWidget, Krita

from . import options as opts
from .extension import STARTING, client, guarded, run, with_worker
from .messages import explain
from .qt import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout,
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
        self.stroke_scale = QDoubleSpinBox()
        self.stroke_scale.setRange(*opts.STROKE_SCALE)
        self.stroke_scale.setSingleStep(0.25)
        self.stroke_scale.setToolTip("Size of the style's brush strokes relative to the picture")
        self.hint = QComboBox()
        self.style_layer = QComboBox()
        self.style_layer.setToolTip("A layer of this document whose picture is used as a style")
        self.style_layer_strength = QDoubleSpinBox()
        self.style_layer_strength.setRange(0.0, 1.0)
        self.style_layer_strength.setSingleStep(0.05)
        self.keep = QComboBox()
        self.keep.addItems(["none", "luminance", "colors"])
        self.tileable = QCheckBox("keep textures seamless")
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2 ** 31 - 1)
        self.seed.setSpecialValueText("canonical")
        self.status = QLabel()
        self.status.setWordWrap(True)
        refresh = QPushButton("Refresh styles and layers")
        refresh.clicked.connect(lambda: guarded(self.refresh, self))
        go = QPushButton("Colorize && Stylize")
        go.clicked.connect(lambda: guarded(self.run, self))
        for label, widget in (("Style", self.style), ("Strength", self.strength), ("Stroke scale", self.stroke_scale),
                              ("Hint layer", self.hint), ("Style reference", self.style_layer),
                              ("Reference strength", self.style_layer_strength), ("Keep", self.keep),
                              ("", self.tileable), ("Seed", self.seed)):
            form.addRow(label, widget)
        layout = QVBoxLayout(body)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(refresh)
        layout.addWidget(go)
        self.setWidget(body)
        self.styles_asked = False
        self.load()

    def load(self):
        s = opts.load(Krita.instance())
        self.style.clear()
        self.style.addItem(s["style"], s["style"])
        self.strength.setValue(s["strength"])
        self.stroke_scale.setValue(s["stroke_scale"])
        self.style_layer_strength.setValue(s["style_layer_strength"])
        self.keep.setCurrentText(s["keep"])
        self.tileable.setChecked(s["tileable"])
        self.seed.setValue(s["seed"])

    def showEvent(self, event):
        super().showEvent(event)
        if not self.styles_asked:   # the first time the docker is seen: fill in the styles
            self.refresh()

    def refresh(self):
        """Styles from the worker's model (asked on a thread); layers of the active document."""
        self.styles_asked = True
        self.status.setText("Asking the chromastyle worker for its styles…")
        with_worker(self.show_styles, lambda: self.status.setText(STARTING))
        self.refresh_layers()

    def show_styles(self, styles, error):
        if error is not None:
            self.status.setText(explain(error, "krita", client()))
            return
        current = self.style.currentData() or "natural"
        self.style.clear()
        for s in styles:
            self.style.addItem(s["name"], s["slug"])
        self.style.setCurrentIndex(max(0, self.style.findData(current)))
        self.status.setText(f"Ready: {len(styles)} styles.")

    def refresh_layers(self):
        """The paint layers of the active document, for the hint layer and the style reference."""
        names = []
        doc = Krita.instance().activeDocument()
        if doc:
            stack = list(doc.topLevelNodes())
            while stack:
                node = stack.pop()
                if node.type() == "paintlayer":
                    names.append(node.name())
                stack.extend(node.childNodes())
        for combo in (self.hint, self.style_layer):
            current = combo.currentData() or ""
            combo.clear()
            combo.addItem("(none)", "")
            for name in names:
                combo.addItem(name, name)
            combo.setCurrentIndex(max(0, combo.findData(current)))

    def settings(self):
        return {"style": self.style.currentData() or "natural", "strength": self.strength.value(),
                "stroke_scale": self.stroke_scale.value(), "hint_layer": self.hint.currentData() or "",
                "style_layer": self.style_layer.currentData() or "",
                "style_layer_strength": self.style_layer_strength.value(),
                "keep": self.keep.currentText(), "tileable": self.tileable.isChecked(), "seed": self.seed.value()}

    def run(self):
        opts.save(Krita.instance(), self.settings())
        run(settings=self.settings(), parent=self)

    def canvasChanged(self, canvas):
        self.refresh_layers()
