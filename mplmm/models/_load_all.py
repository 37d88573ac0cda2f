"""Import every model module so that their ``@register`` decorators run."""
import importlib
import pkgutil

from . import __path__ as _models_path

for _info in pkgutil.walk_packages(_models_path, prefix=__name__.rsplit(".", 1)[0] + "."):
    if not _info.name.rsplit(".", 1)[-1].startswith("_"):
        importlib.import_module(_info.name)
