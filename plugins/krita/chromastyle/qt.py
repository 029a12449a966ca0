"""A tiny Qt binding shim: Krita 5 ships PyQt5, Krita 6 PyQt6."""
try:
    from PyQt5.QtCore import QByteArray, QObject, Qt, QTimer, pyqtSignal  # noqa: F401
    from PyQt5.QtWidgets import (QApplication, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel,  # noqa: F401
                                 QMessageBox, QProgressDialog, QPushButton, QSpinBox, QVBoxLayout, QWidget)
    QT6 = False
except ImportError:  # Krita 6
    from PyQt6.QtCore import QByteArray, QObject, Qt, QTimer, pyqtSignal  # noqa: F401
    from PyQt6.QtWidgets import (QApplication, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel,  # noqa: F401
                                 QMessageBox, QProgressDialog, QPushButton, QSpinBox, QVBoxLayout, QWidget)
    QT6 = True


def window_modal():
    return Qt.WindowModality.WindowModal if QT6 else Qt.WindowModal
