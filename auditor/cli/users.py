"""``auditor users``: local accounts and API tokens of the legal portal, from the shell.

Passwords are read from a prompt (twice, not echoed) or from standard input with
``--password-stdin``; never from an argument, which would land in the shell's history.
"""

from __future__ import annotations

__all__ = ["app"]

import sys

import typer

from auditor.cli._common import console, open_session
from auditor.errors import AuditorError, Problem

app = typer.Typer(help="Local accounts (and API tokens) of the legal portal.",
                  no_args_is_help=True)

_STDIN = typer.Option(False, "--password-stdin",
                      help="Read the password from the first line of standard input.")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise AuditorError("no password on standard input", [Problem(
                "--password-stdin read an empty line", fix="pipe the password in, e.g. "
                "from a password manager's command line")])
        return line
    if not sys.stdin.isatty():
        raise AuditorError("no terminal to ask for the password", [Problem(
            "standard input is not a terminal", fix="use --password-stdin")])
    import getpass

    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise AuditorError("the passwords differ", [Problem("typed twice, not the same",
                                                            fix="run the command again")])
    return first


@app.command("add")
def add(
    username: str = typer.Argument(..., help="Sign-in name, e.g. jane.doe@firm.example."),
    role: str = typer.Option("legal", "--role", help="legal | analyst | admin."),
    password_stdin: bool = _STDIN,
    sso_only: bool = typer.Option(False, "--sso-only", help="No password: the account signs "
                                  "in only through single sign-on (its e-mail as name)."),
) -> None:
    """Create a portal account (asks for its password)."""
    from auditor.web.accounts import add_user

    password = None if sso_only else _password(password_stdin)
    with open_session() as s:
        user = add_user(s, username, role, password)
        console.print(f"added {user.username} ({user.role})", highlight=False)


@app.command("list")
def list_() -> None:
    """List the portal accounts: name, role, state, creation time."""
    from auditor.web.accounts import list_users

    with open_session() as s:
        users = list_users(s)
        if not users:
            console.print("no portal users yet: `auditor users add NAME --role admin`")
        width = max((len(u.username) for u in users), default=0)
        for u in users:
            state = "disabled" if u.disabled else "active"
            how = "password" if u.password_hash else "single sign-on only"
            console.print(f"{u.username:{width}}  {u.role:7}  {state:8}  {how:19}  "
                          f"created {u.created_at:%Y-%m-%d %H:%M}Z", highlight=False,
                          soft_wrap=True)


@app.command("disable")
def disable(
    username: str = typer.Argument(..., help="The account."),
    enable: bool = typer.Option(False, "--enable", help="Enable it again instead."),
) -> None:
    """Disable an account and end its sessions at once (or --enable it again)."""
    from auditor.web.accounts import set_disabled

    with open_session() as s:
        set_disabled(s, username, not enable)
    console.print(f"{username} {'enabled' if enable else 'disabled; its sessions ended'}",
                  highlight=False)


@app.command("passwd")
def passwd(
    username: str = typer.Argument(..., help="The account."),
    password_stdin: bool = _STDIN,
) -> None:
    """Set an account's password (asks for it); ends the account's sessions."""
    from auditor.web.accounts import set_password

    password = _password(password_stdin)
    with open_session() as s:
        set_password(s, username, password)
    console.print(f"password of {username} changed; its sessions ended", highlight=False)


@app.command("role")
def role(
    username: str = typer.Argument(..., help="The account."),
    new_role: str = typer.Argument(..., help="legal | analyst | admin."),
) -> None:
    """Change an account's role."""
    from auditor.web.accounts import set_role

    with open_session() as s:
        set_role(s, username, new_role)
    console.print(f"{username} is now {new_role}", highlight=False)


@app.command("token")
def token(
    name: str = typer.Argument(..., help="A name for the token, e.g. the DMS it serves."),
    role: str = typer.Option("legal", "--role", help="legal | analyst (read-only API)."),
    revoke: bool = typer.Option(False, "--revoke", help="Revoke the token of this name."),
) -> None:
    """Issue a bearer token for the read-only JSON API (printed once), or --revoke it."""
    from auditor.web.accounts import issue_token, revoke_token

    with open_session() as s:
        if revoke:
            revoke_token(s, name)
            console.print(f"token {name} revoked", highlight=False)
            return
        secret, _ = issue_token(s, name, role)
    console.print(f"token {name} ({role}); shown once, store it now:", highlight=False)
    print(secret)
