"""Old path of the readers (searcher/readers/), kept for code that imports it."""

from searcher.readers.documents import *  # noqa: F401,F403
from searcher.readers.email import *  # noqa: F401,F403
from searcher.readers.formats import *  # noqa: F401,F403
from searcher.readers.loaders import *  # noqa: F401,F403
from searcher.readers.options import *  # noqa: F401,F403
from searcher.readers.tables import *  # noqa: F401,F403
from searcher.readers.text import *  # noqa: F401,F403
from searcher.readers.walk import *  # noqa: F401,F403
from searcher.sanitize import is_blank  # noqa: F401
