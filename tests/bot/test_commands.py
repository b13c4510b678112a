"""bot/commands.py: the comment grammar of SPEC §6, table-driven, plus fuzzing."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.commands import COMMANDS, did_you_mean, parse_comment, usage
from bot.errors import UsageError
from bot.models import Command

BOT = "plankeeper-bot"
ALIASES = ("atlantis-compat",)


def parse(body: str) -> Command | None:
    return parse_comment(body, bot_login=BOT, aliases=ALIASES)


P = Command(name="plan")
A = Command(name="apply")

VALID = [
    # addressing
    ("/plan", P),
    ("/PLAN", P),
    ("  /plan  ", P),
    ("`/plan`", P),
    ("```\n/plan\n```", P),
    ("\n\n/plan\nsecond line -d ignored", P),
    ("plankeeper plan", P),
    ("Plankeeper   PLAN", P),
    ("@plankeeper-bot plan", P),
    ("@PlanKeeper-Bot apply", A),
    ("atlantis-compat plan", P),
    ("/apply", A),
    ("/unlock", Command(name="unlock")),
    ("/cancel", Command(name="cancel")),
    ("/approve_policies", Command(name="approve_policies")),
    ("/help", Command(name="help")),
    ("/help apply", Command(name="help", extra_args=("apply",))),
    ("/version", Command(name="version")),
    # flags
    ("/plan -d infra/prod", Command(name="plan", dirs=("infra/prod",))),
    ("/plan -d a -d b -d a", Command(name="plan", dirs=("a", "b"))),
    ("/plan -d=stacks/*", Command(name="plan", dirs=("stacks/*",))),
    ("/plan --dir ./net/ --workspace=staging",
     Command(name="plan", dirs=("net",), workspace="staging")),
    ("/plan -d .", Command(name="plan", dirs=(".",))),
    ("/plan -d 'dir with space'", Command(name="plan", dirs=("dir with space",))),
    ("/plan -w prod-eu_1", Command(name="plan", workspace="prod-eu_1")),
    ("/plan -D net", Command(name="plan", dirs=("net",))),
    ("/plan -p vpc -p dns", Command(name="plan", projects=("vpc", "dns"))),
    ("/plan --project=vpc --verbose", Command(name="plan", projects=("vpc",), verbose=True)),
    ("/plan --", P),
    ("/plan -d net -- -target=aws_vpc.main -var x=1 -var=y=2",
     Command(name="plan", dirs=("net",), extra_args=("-target=aws_vpc.main", "-var", "x=1",
                                                      "-var=y=2"))),
    ("/plan -- --replace=aws_instance.web -refresh=false -lock-timeout=5m -parallelism=4",
     Command(name="plan", extra_args=("--replace=aws_instance.web", "-refresh=false",
                                      "-lock-timeout=5m", "-parallelism=4"))),
    ("/apply -p vpc --queue --auto-merge-disabled --verbose",
     Command(name="apply", projects=("vpc",), queue=True, auto_merge_disabled=True,
             verbose=True)),
    ("/plan -- -destroy", Command(name="plan", extra_args=("-destroy",))),
    ("/plan -d net -- -destroy -target=aws_vpc.main",
     Command(name="plan", dirs=("net",), extra_args=("-destroy", "-target=aws_vpc.main"))),
    ("/plan -- -var-file=env/dev.tfvars -var-file ../common.tfvars",
     Command(name="plan", extra_args=("-var-file=env/dev.tfvars", "-var-file", "../common.tfvars"))),
    ("/apply -d net -w prod", Command(name="apply", dirs=("net",), workspace="prod")),
    ("/apply --auto-merge-method squash", Command(name="apply", auto_merge_method="squash")),
    ("/apply -p vpc --auto-merge-method=rebase", Command(name="apply", projects=("vpc",), auto_merge_method="rebase")),
    ("/apply --dir=a --dir=b", Command(name="apply", dirs=("a", "b"))),
]

INVALID = [
    # (comment, text the reply must contain)
    ("/pln", "Did you mean `/plan`?"),
    ("/aply", "Did you mean `/apply`?"),
    ("/unlok", "Did you mean `/unlock`?"),
    ("/plans -d x", "Did you mean `/plan`?"),
    ("terraform plan", "Did you mean `/plan`?"),
    ("Terraform apply -auto-approve", "Did you mean `/apply`?"),
    ("atlantis plan -d x", "Did you mean `/plan`?"),
    ("plankeeper", "No command given."),
    ("plankeeper deploy", "Unknown command `deploy`."),
    ("@plankeeper-bot frobnicate", "Unknown command `frobnicate`."),
    ("/plan -x", "Unknown flag `-x` for `/plan`."),
    ("/plan --queue", "Unknown flag `--queue` for `/plan`."),
    ("/plan --auto-merge-disabled", "Unknown flag `--auto-merge-disabled`"),
    ("/apply --bogus", "Unknown flag `--bogus` for `/apply`."),
    ("/apply --auto-merge-method fast-forward", "`--auto-merge-method` takes merge, squash or rebase"),
    ("/apply --auto-merge-method", "Flag `--auto-merge-method` needs a value."),
    ("/plan --auto-merge-method merge", "Unknown flag `--auto-merge-method` for `/plan`."),
    ("/plan -d", "Flag `-d` needs a value."),
    ("/plan -d -w x", "Flag `-d` needs a value."),
    ("/plan -w", "Flag `-w` needs a value."),
    ("/plan -p", "Flag `-p` needs a value."),
    ("/plan --dir= ", "`-d` needs a directory."),
    ("/plan --verbose=yes", "Flag `--verbose` takes no value."),
    ("/plan stray", "Unexpected argument `stray`."),
    ("/plan -p vpc -d net", "`-p` cannot be combined with `-d` or `-w`."),
    ("/apply -w prod -p vpc", "`-p` cannot be combined with `-d` or `-w`."),
    ("/plan -w a -w b", "`-w` may be given only once."),
    ("/plan -d /etc", "must be relative to the repository root"),
    ("/plan -d ~/x", "must be relative to the repository root"),
    ("/plan -d C:/x", "must be relative to the repository root"),
    ("/plan -d ../outside", "may not contain `..`"),
    ("/plan -d a/../../b", "may not contain `..`"),
    (r"/plan -d 'a\..\b'", "may not contain `..`"),
    ("/plan -w a/b", "Invalid workspace name `a/b`"),
    (r"/plan -w 'a\b'", "Invalid workspace name"),
    ("/plan -w a..b", "Invalid workspace name `a..b`"),
    ("/plan -w '$HOME'", "Invalid workspace name `$HOME`"),
    ("/plan -w 'a b'", "Invalid workspace name `a b`"),
    ("/plan -w=-rf", "Invalid workspace name `-rf`"),
    ("/plan -w ~root", "Invalid workspace name `~root`"),
    ("/plan -- -var-file=/etc/passwd", ("`-var-file` takes a path inside the repository, relative to the "
                                        "project's directory; `/etc/passwd` is not one.")),
    ("/plan -- -var-file ~/secrets.tfvars", "`~/secrets.tfvars` is not one."),
    ("/plan -- -var-file=", "`-var-file` takes a path inside the repository"),
    ("/plan -- -destroy extra", "Unexpected extra argument `extra`"),
    ("/plan -- -chdir=..", "Extra argument `-chdir` is not allowed."),
    ("/plan -- -target=x extra", "Unexpected extra argument `extra`"),
    ("/plan -- positional", "Unexpected extra argument `positional`"),
    ("/apply -- -target=x", "`/apply` takes no extra arguments after `--`."),
    ("/plan -d 'unclosed", "Could not read the arguments"),
    ('/plan -d "unclosed', "check your quotes"),
    ("/unlock now", "`/unlock` takes no arguments (got `now`)."),
    ("/cancel -d x", "`/cancel` takes no arguments"),
    ("/version --verbose", "`/version` takes no arguments"),
    ("/help frobnicate", "Unknown command `frobnicate`."),
]

NOT_FOR_US = [
    "",
    "   \n\n  ",
    "LGTM, thanks!",
    "please run /plan later",
    "/lgtm",
    "/cc @alice",
    "/",
    "/build",
    "/etc/hosts is wrong",
    "Terraform looks good",
    "terraform fmt",
    "plankeeper-is-great",
]


@pytest.mark.parametrize("body, expected", VALID)
def test_valid_comments(body: str, expected: Command) -> None:
    assert parse(body) == expected


@pytest.mark.parametrize("body, message", INVALID)
def test_invalid_comments_reply_with_the_problem_and_usage(body: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(body)
    reply = info.value.message
    assert message in reply
    assert "```" in reply  # the usage block comes with every error


@pytest.mark.parametrize("body", NOT_FOR_US)
def test_comments_not_addressed_to_the_bot(body: str) -> None:
    assert parse(body) is None


def test_suite_is_large_enough() -> None:
    assert len(VALID) + len(INVALID) + len(NOT_FOR_US) >= 45


def test_error_reply_shows_usage_of_that_command() -> None:
    with pytest.raises(UsageError) as info:
        parse("/apply -x")
    assert "/apply [-d DIR]..." in info.value.message
    assert "/plan [-d DIR]" not in info.value.message


def test_unknown_command_without_a_guess_shows_all_commands() -> None:
    with pytest.raises(UsageError) as info:
        parse("plankeeper deploy")
    for name in COMMANDS:
        assert f"/{name}" in info.value.message


def test_alias_not_configured_is_a_did_you_mean() -> None:
    assert parse_comment("atlantis-compat plan") is None
    assert parse_comment("atlantis plan", aliases=["atlantis"]) == P


def test_mention_requires_the_configured_login() -> None:
    assert parse_comment("@plankeeper-bot plan") is None
    assert parse_comment("@plankeeper-bot plan", bot_login="@plankeeper-bot") == P


def test_github_app_login_is_mentioned_without_the_bot_suffix() -> None:
    assert parse_comment("@myapp plan", bot_login="myapp[bot]") == P
    assert parse_comment("@myapp[bot] plan", bot_login="myapp[bot]") == P
    assert parse_comment("@other plan", bot_login="myapp[bot]") is None


def test_extra_args_allowlist_is_configurable() -> None:
    assert parse_comment("/plan -- -var-file=x.tfvars", extra_args_allowlist=["-var-file"]) == \
        Command(name="plan", extra_args=("-var-file=x.tfvars",))
    with pytest.raises(UsageError, match="Allowed: none"):
        parse_comment("/plan -- -target=x", extra_args_allowlist=[])


def test_usage_lists_every_command_and_one_command() -> None:
    everything = usage()
    assert all(f"/{name}" in everything for name in COMMANDS)
    assert usage("plan").startswith("Usage of `/plan`")
    assert "--queue" in usage("apply") and "--queue" not in usage("plan")
    assert usage("nope") == everything


@pytest.mark.parametrize("word, guess", [
    ("pln", "plan"), ("PLN", "plan"), ("aply", "apply"), ("halp", "help"), ("verison", "version"),
    ("cancle", "cancel"), ("approve", "approve_policies"), ("lgtm", None), ("build", None),
    ("", None),
])
def test_did_you_mean(word: str, guess: str | None) -> None:
    assert did_you_mean(word) == guess


COMMENTISH = st.one_of(
    st.text(),
    st.builds(lambda prefix, words: prefix + " ".join(words),
              st.sampled_from(["/", "/plan ", "/apply ", "plankeeper ", "@plankeeper-bot ",
                               "terraform ", "`/plan ", "/help "]),
              st.lists(st.one_of(
                  st.sampled_from(["-d", "-w", "-p", "--", "--dir=", "-d=", "--verbose",
                                   "--queue", "..", "/", "'", '"', "\\", "-var", "-target=x",
                                   "$x", "~", "`", "\x00", "\n", "plan", "*"]),
                  st.text(max_size=6)), max_size=8)),
)


@settings(max_examples=1000)
@given(body=COMMENTISH)
def test_no_comment_raises_anything_but_usage_error(body: str) -> None:
    try:
        result = parse(body)
    except UsageError as exc:
        assert exc.message.strip()
        return
    assert result is None or result.name in COMMANDS
    if result is not None:
        # Whatever is accepted obeys the SPEC's path and workspace rules.
        assert not (result.projects and (result.dirs or result.workspace))
        for d in result.dirs:
            assert not d.startswith("/") and ".." not in d.split("/")
        if result.workspace is not None:
            assert not any(c in result.workspace for c in "/\\$") and ".." not in result.workspace


# ---------------------------------------------------------------- /import and /state rm


@pytest.mark.parametrize(("body", "expected"), [
    ("/import aws_s3_bucket.b my-bucket", Command(name="import", args=("aws_s3_bucket.b", "my-bucket"))),
    ("/import -d infra -w prod 'module.a[\"k\"].x' id-1",
     Command(name="import", dirs=("infra",), workspace="prod", args=('module.a["k"].x', "id-1"))),
    ("/import -p app x.y 1 -- -var a=b",
     Command(name="import", projects=("app",), args=("x.y", "1"), extra_args=("-var", "a=b"))),
    ("/state rm x.y", Command(name="state", args=("x.y",))),
    ("plankeeper state RM --dir=infra x.y z.w -- -lock-timeout=5s",
     Command(name="state", dirs=("infra",), args=("x.y", "z.w"), extra_args=("-lock-timeout=5s",))),
])
def test_import_and_state_rm(body: str, expected: Command) -> None:
    assert parse(body) == expected
    assert Command.from_dict(expected.to_dict()) == expected


@pytest.mark.parametrize(("body", "message"), [
    ("/import", "needs a resource address and an id (got 0"),
    ("/import x.y", "needs a resource address and an id (got 1"),
    ("/import x.y 1 2", "needs a resource address and an id (got 3"),
    ("/import -p app -d infra x.y 1", "`-p` cannot be combined with `-d` or `-w`."),
    ("/import -d a -d b x.y 1", "works on one project"),
    ("/import -d 'stacks/*' x.y 1", "takes no globs"),
    ("/import -d ../out x.y 1", "may not contain `..`"),
    ("/import --verbose x.y 1", "Unknown flag `--verbose` for `/import`."),
    ("/import x.y 1 -- -destroyit", "Extra argument `-destroyit` is not allowed."),
    ("/state", "needs the subcommand `rm`"),
    ("/state list", "needs the subcommand `rm`"),
    ("/state rm", "needs at least one resource address"),
    ("/state rm -w 'a b' x.y", "Invalid workspace name"),
    ("/state rm -p a -p b x.y", "works on one project"),
])
def test_import_and_state_rm_refused(body: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse(body)
    assert message in err.value.message
    assert "Usage of `/" in err.value.message


def test_command_without_args_reads_old_json() -> None:
    assert Command.from_dict({"name": "plan"}).args == ()
    assert "/state rm" in usage() and "/import" in usage("import")
