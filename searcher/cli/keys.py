"""The API keys of `searcher serve --api-keys FILE`: `searcher keys add|list|remove`."""

from __future__ import annotations

from pathlib import Path

import click

from searcher.cli.output import Group

key_file_option = click.option(
    "--file", "key_file", type=click.Path(dir_okay=False, path_type=Path), required=True, metavar="FILE",
    help="The key file (`searcher serve --api-keys FILE`).",
)


@click.group(cls=Group)
def keys():
    """Manage the API keys of `searcher serve --api-keys FILE` (only their hashes are stored).

    \b
    searcher keys add --scope read --file keys.txt     # prints the new key, once
    searcher keys add --scope read --indexes notes,mail --file keys.txt
    searcher keys add --scope read --user ann --groups finance,legal --file keys.txt
    searcher keys add --scope metrics --file keys.txt  # for Prometheus: /metrics only
    searcher keys list --file keys.txt
    searcher keys remove 3f9c01ab --file keys.txt
    """


@keys.command("add")
@click.option("--scope", type=click.Choice(["read", "admin", "metrics"]), required=True,
              help="read: searches, documents, the page; admin: also the write API and /metrics; "
                   "metrics: /metrics only (a Prometheus server's key).")
@click.option("--indexes", "index_names", default="*", show_default=True, metavar="NAMES",
              help="Limit the key to these indexes of `serve --index NAME=DIR` (comma-separated); * for all.")
@click.option("--user", metavar="NAME",
              help="Who holds the key: a read key sees the documents whose readers name user:NAME (docs/access.md).")
@click.option("--groups", metavar="NAMES",
              help="The holder's groups, comma-separated: a read key sees the documents whose readers name "
                   "group:NAME for one of them.")
@key_file_option
def keys_add(scope, index_names, user, groups, key_file):
    """Make a key; prints it once (stdout), stores only its hash."""
    from searcher.web.keys import add_key, check_holder, check_indexes

    try:
        if check_indexes(index_names) != "*" and scope == "metrics":
            raise ValueError("a metrics key reads /metrics, which covers every index of the server: leave out --indexes")
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--indexes") from None
    try:
        check_holder(user, groups)
        if (user or groups) and scope == "metrics":
            raise ValueError("a metrics key reads no documents: leave out --user and --groups")
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--user/--groups") from None
    entry, key = add_key(key_file, scope, index_names, user, groups)
    click.echo(key)
    limit = "" if entry.index_limit is None else f", indexes {entry.indexes}"
    limit += f", user {entry.user}" if entry.user else ""
    limit += f", groups {','.join(entry.groups)}" if entry.groups else ""
    click.echo(f"added key {entry.id} ({scope}{limit}) to {key_file}; it is shown only now, so keep it somewhere "
               f"safe. A running server picks it up at once.", err=True)


@keys.command("list")
@key_file_option
def keys_list(key_file):
    """The keys' ids, scopes, indexes, users and groups (a key is srch_<id>_..., so each key
    says which it is)."""
    from searcher.web.keys import read_key_file

    entries = read_key_file(key_file)
    if not entries:
        click.echo(f"no keys in {key_file}", err=True)
        return
    click.echo(f"{'ID':<10} {'SCOPE':<7} {'INDEXES':<16} {'USER':<16} GROUPS")
    for entry in entries:
        click.echo(f"{entry.id:<10} {entry.scope:<7} {entry.indexes:<16} {entry.user or '-':<16} "
                   f"{','.join(entry.groups) or '-'}")


@keys.command("remove")
@click.argument("key_id")
@key_file_option
def keys_remove(key_id, key_file):
    """Remove a key by its id (or the key itself); a running server refuses it at once."""
    from searcher.web.keys import key_id as id_in_key, remove_key

    shown = id_in_key(key_id) or key_id[:40]  # never echo a whole key
    if not remove_key(key_file, key_id):
        raise click.ClickException(f"no key {shown!r} in {key_file} (`searcher keys list --file {key_file}`)")
    click.echo(f"removed key {shown} from {key_file}")
