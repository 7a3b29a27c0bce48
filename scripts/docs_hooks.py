"""MkDocs hooks (mkdocs.yml `hooks:`): the CLI reference keeps click's examples as written.

mkdocs-click copies a command's docstring into the page as Markdown, which joins the lines of a
paragraph, and drops click's `\\b` (do not rewrap) markers. The examples in our docstrings are
such paragraphs, each line a `searcher ...` command: a paragraph made only of those lines
becomes a text block, as `searcher COMMAND --help` prints it.
"""

from markdown import Extension
from markdown.preprocessors import Preprocessor

PROG = "searcher "


class KeepCommandLines(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out, paragraph, fenced = [], [], False

        def flush():
            if paragraph and all(line.startswith(PROG) for line in paragraph):
                out.extend(["```text", *paragraph, "```"])
            else:
                out.extend(paragraph)
            paragraph.clear()

        for line in lines:
            if line.lstrip().startswith("```"):
                flush()
                fenced = not fenced
                out.append(line)
            elif fenced:
                out.append(line)
            elif line.strip():
                paragraph.append(line)
            else:
                flush()
                out.append(line)
        flush()
        return out


class CommandLines(Extension):
    def extendMarkdown(self, md):
        # After mkdocs-click (141) has written the docstrings in, before fences are read (superfences: 25-30).
        md.preprocessors.register(KeepCommandLines(md), "keep_command_lines", 140)


def on_config(config):
    config.markdown_extensions.append(CommandLines())
    return config
