"""``liaotian user role|disable|enable|limits|list`` and ``liaotian audit``: roles, statuses
and own limits from the server's shell, each change in the audit log as actor ``cli``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from liaotian.store.accounts import TOKEN
from tests.cluster import PASSWORD, accounts_of
from tests.conftest import SettingsFactory
from tests.server_harness import run_server
from tests.test_admin import closed_signed_out, open_socket

LIAOTIAN = Path(sys.executable).with_name("liaotian")


class Shell:
    """Runs ``liaotian`` on the test's database; answers (status, stdout, stderr)."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.env = {**os.environ, "LIAOTIAN_DATABASE_URL": database_url}
        self.workdir = workdir

    async def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(LIAOTIAN), *args, env=self.env, cwd=self.workdir,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def ok(self, *args: str, stdin: str = "") -> str:
        code, out, err = await self(*args, stdin=stdin)
        assert code == 0, (args, out, err)
        return out

    async def refused(self, *args: str) -> str:
        """The one line a refused command prints (status 2, nothing on stdout)."""
        code, out, err = await self(*args)
        assert (code, out) == (2, ""), (args, out, err)
        assert err.startswith("liaotian: "), err
        assert err.count("\n") == 1, err
        assert "[" not in err
        return err

    async def add(self, name: str, *flags: str) -> str:
        return await self.ok("user", "add", name, "--password-stdin", *flags, stdin=PASSWORD + "\n")


@pytest.fixture
def shell(database_url: str, tmp_path: Path) -> Shell:
    return Shell(database_url, tmp_path)


def users_of(listing: str) -> dict[str, tuple[str, str]]:
    """``user list``'s lines as name → (role, status)."""
    rows = [line.split("\t") for line in listing.splitlines()]
    return {row[0]: (row[1], row[2]) for row in rows}


async def test_roles_and_statuses_from_the_shell(shell: Shell) -> None:
    """The first user is an admin, ``--admin`` makes another; role, disable and enable
    change them; the last active admin cannot be demoted, disabled or removed."""
    assert "(admin)" in await shell.add("root")
    assert "(user)" in await shell.add("alice")
    assert "(admin)" in await shell.add("boss", "--admin")
    assert users_of(await shell.ok("user", "list")) == {
        "alice": ("user", "active"),
        "boss": ("admin", "active"),
        "root": ("admin", "active"),
    }
    await shell.ok("user", "role", "alice", "admin")
    await shell.ok("user", "role", "boss", "user")
    await shell.ok("user", "disable", "root")
    assert users_of(await shell.ok("user", "list")) == {
        "alice": ("admin", "active"),
        "boss": ("user", "active"),
        "root": ("admin", "disabled"),
    }
    # alice is the last active admin now.
    for command in (("user", "role", "alice", "user"), ("user", "disable", "alice")):
        assert "last active admin" in await shell.refused(*command)
    assert "last active admin" in await shell.refused("user", "remove", "alice")
    assert "enabled" in await shell.ok("user", "enable", "root")
    await shell.ok("user", "disable", "alice")
    assert users_of(await shell.ok("user", "list"))["alice"] == ("admin", "disabled")
    assert "no user nobody" in await shell.refused("user", "disable", "nobody")
    assert "no user nobody" in await shell.refused("user", "role", "nobody", "admin")
    code, _, err = await shell("user", "role", "boss", "owner")
    assert code == 2
    assert "invalid choice" in err


async def test_enable_approves_a_pending_sign_up(shell: Shell, database_url: str) -> None:
    await shell.add("root")
    async with accounts_of(database_url) as accounts:
        await accounts.add_user("dora", PASSWORD, status="pending")
        assert await accounts.sign_in_status("dora", PASSWORD) == "pending"
        assert users_of(await shell.ok("user", "list"))["dora"] == ("user", "pending")
        assert "dora approved" in await shell.ok("user", "enable", "dora")
        assert await accounts.sign_in_status("dora", PASSWORD) == "active"
    assert "user.approve\tdora" in await shell.ok("audit")


async def test_own_limits_from_the_shell(shell: Shell, database_url: str) -> None:
    """NAME=VALUE sets (others kept), none lifts, --clear drops them all; a wrong name,
    number or user is said in plain words and changes nothing."""
    await shell.add("root")
    await shell.add("bob")
    out = await shell.ok("user", "limits", "bob", "tokens_per_day=10000", "messages_per_day=none")
    assert "tokens_per_day=10000, messages_per_day=none" in out
    await shell.ok("user", "limits", "bob", "cost_per_month=2.5")
    async with accounts_of(database_url) as accounts:
        assert (await accounts.user("bob")).limits == {
            "tokens_per_day": 10000,
            "messages_per_day": None,
            "cost_per_month": 2.5,
        }
        for args, words in (
            (("tokens=5",), "unknown limit 'tokens'"),
            (("tokens_per_day=lots",), "the limit tokens_per_day is a number"),
            (("tokens_per_day=-1",), "at least 0"),
            (("concurrent_replies=0",), "at least 1"),
            (("messages_per_day=1.5",), "whole number"),
            (("tokens_per_day",), "NAME=VALUE"),
            (("cost_per_month=inf",), "is a number"),
            ((), "--clear"),
            (("tokens_per_day=1", "--clear"), "--clear"),
        ):
            assert words in await shell.refused("user", "limits", "bob", *args), args
        assert "no user nobody" in await shell.refused("user", "limits", "nobody", "--clear")
        assert len((await accounts.user("bob")).limits) == 3
        assert "none (the role limits apply)" in await shell.ok("user", "limits", "bob", "--clear")
        assert (await accounts.user("bob")).limits == {}


async def test_every_cli_action_is_audited_newest_first(shell: Shell) -> None:
    await shell.add("root")
    await shell.add("bob")
    await shell.ok("user", "passwd", "bob", "--password-stdin", stdin="a new password\n")
    await shell.ok("token", "create", "bob", "--label", "ci")
    token_id = (await shell.ok("token", "list", "bob")).split()[0]
    await shell.ok("token", "revoke", token_id)
    await shell.ok("user", "role", "bob", "admin")
    await shell.ok("user", "disable", "bob")
    await shell.ok("user", "enable", "bob")
    await shell.ok("user", "limits", "bob", "tokens_per_day=5")
    await shell.ok("user", "remove", "bob")
    lines = (await shell.ok("audit")).splitlines()
    fields = [line.split("\t") for line in lines]
    assert [(f[2], f[3], f[4]) for f in fields] == [
        ("cli", "user.remove", "bob"),
        ("cli", "user.limits", "bob"),
        ("cli", "user.enable", "bob"),
        ("cli", "user.disable", "bob"),
        ("cli", "user.role", "bob"),
        ("cli", "token.revoke", "bob"),
        ("cli", "token.create", "bob"),
        ("cli", "user.password", "bob"),
        ("cli", "user.create", "bob"),
        ("cli", "user.create", "root"),
    ]
    ids = [int(f[0]) for f in fields]
    assert ids == sorted(ids, reverse=True)
    assert "a new password" not in "\n".join(lines)
    assert PASSWORD not in "\n".join(lines)
    page = (await shell.ok("audit", "--limit", "2", "--before", str(ids[1]))).splitlines()
    assert [line.split("\t")[3] for line in page] == ["user.enable", "user.disable"]


async def test_disabling_from_the_shell_closes_the_sockets_of_a_running_server(
    shell: Shell, make_settings: SettingsFactory, database_url: str
) -> None:
    """The server's sweep sees the account's credentials dead within the interval."""
    await shell.add("root")
    await shell.add("bob")
    async with accounts_of(database_url) as accounts:
        _, token = await accounts.create_token("bob")
        async with run_server(make_settings(credential_check_interval=0.2)) as server:
            socket = await open_socket(server, Authorization=f"Bearer {token}")
            await shell.ok("user", "disable", "bob")
            await closed_signed_out(socket, within=5)
            assert await accounts.identify(token, TOKEN) is None


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "--limit", "0"),
        ("audit", "--limit", "-1"),
        ("audit", "--before", "1" + "0" * 24),
        ("token", "revoke", "1" + "0" * 24),
    ],
)
async def test_ids_and_counts_out_of_range_are_refused_in_words(
    shell: Shell, args: tuple[str, ...]
) -> None:
    """Not a traceback (an id too large for the database), nor every entry (a negative
    limit is none to SQLite): argparse's one line, status 2."""
    await shell.add("root")
    code, out, err = await shell(*args)
    assert (code, out) == (2, ""), (out, err)
    assert "is not a whole number from 1 to" in err
    assert "Traceback" not in err
