"""What the parent's program registered in libraries' registries, registered in a worker too.

A script extends the libraries it uses by registering things in them, once, at its top:
a pandas accessor (``@pd.api.extensions.register_dataframe_accessor("geo")``) or extension
dtype, an xarray accessor (``@xr.register_dataset_accessor("geo")``), a matplotlib colormap
(``matplotlib.colormaps.register(cmap)``) or font file (``fontManager.addfont(path)``, a
CJK font for the labels), an image format of a Pillow plugin
(pillow-heif's ``register_heif_opener()``), a sqlite3 adapter or converter
(``sqlite3.register_adapter(Decimal, str)``), a csv dialect (``csv.register_dialect``), a
file type (``mimetypes.add_type``), an XML
namespace prefix (``xml.etree.ElementTree.register_namespace("svg", ...)``), a class of its
own as a virtual subclass of an ABC of the standard library
(``collections.abc.Mapping.register(Table)``), a case of a module's generic function
(``@render.register def _(p: Point)`` on a ``functools.singledispatch`` function), a PyYAML
tag (``yaml.add_constructor("!celsius", ...)``, ``add_representer``, a ``YAMLObject``
subclass). In the loop the call replaces, a task's
``df.geo.center()``, ``plt.imshow(a, cmap="mine")``, a label in the added font,
``Image.open("x.heic")``, ``INSERT``
of a ``Decimal`` or ``mimetypes.guess_type("x.geojson")`` worked, ``ET.tostring`` wrote
``svg:`` elements, ``isinstance(Table(), Mapping)`` was true, ``render(point)`` found its case
and ``yaml.safe_load`` the tag; a warm worker never ran those lines, so the same task raised
``AttributeError``, ``KeyError``, ``UnidentifiedImageError``, ``ProgrammingError``,
``TypeError``, ``ConstructorError``, or answered None, ``ns0:`` or False (under joblib too).

:func:`pickled` reads, in the parent, the entries of those registries that are not the
library's own, for the libraries it has imported: again only when a registry changed (a few
``len`` and one ``abc.get_cache_token()`` a call while none does: 1.3 us, 2.3 with pandas
imported, 6 with the nine modules), or an entry was registered again under its name.
mimetypes' entries are those that differ from what a worker's ``mimetypes.init()`` reads
(the same files, read once in the parent); ElementTree's, those its source does not set. A
colormap that an imported module of an installed library holds (seaborn registers its own
as it is imported) is sent as that module's name, which the worker imports.
Each entry is pickled apart (with hybrid: a class of the script by
value), so one that cannot be pickled, or takes more than :data:`LIMIT` pickled (it travels
with every batch), is left out, not the others, with a ``RuntimeWarning`` naming it (once).
:func:`apply` registers them in the worker before each batch's tasks run (importing the
library), once the batch's functions are loaded (a module that registers a colormap as it is
imported, without ``force``, found its name taken), again if a task changed one, and takes
back those the parent no longer has (the worker's own, if it had one, returns); an
initializer runs with them taken back (:func:`withdraw`: it may register them itself), and
the parent's are set again after it.

Left out: an ABC registration of a class that is not the script's (``Sequence.register(
numpy.ndarray)``: sending it would import its module in every worker) or to an ABC outside
:data:`.abcsubclasses.ABC_MODULES`, and an ABC registration once the parent drops it (an ABC
cannot forget a class); codecs (``codecs.register``: the interpreter does not list its
search functions).
Process-wide: not sent to a dask cluster's shared workers.

Its modules: :mod:`.table` (the families in two maps, the parent's signals read every call,
the worker's overlay), :mod:`.common` (what they share: the limit, the warning for an entry
left out, the watch on entries), and one a family: :mod:`.pandasextensions`,
:mod:`.xarrayaccessors`, :mod:`.colormaps` (with :mod:`.libraryimports`), :mod:`.fonts`,
:mod:`.plotextensions` (projections, scales, unit converters), :mod:`.imageformats`,
:mod:`.sqliteadapters`, :mod:`.csvdialects`, :mod:`.filetypes`
(mimetypes), :mod:`.xmlnamespaces`, :mod:`.abcsubclasses`, :mod:`.genericfunctions`
(``functools.singledispatch``), :mod:`.yamltags`.
"""

from __future__ import annotations

from .common import LIMIT
from .table import apply, pickled, rebase, withdraw

__all__ = ["LIMIT", "apply", "pickled", "rebase", "withdraw"]
