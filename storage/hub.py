"""Publishing a dataset directory to the Hugging Face Hub with `huggingface_hub`.

`export_hub` creates the dataset repo when it is missing (and the branch, for a revision),
then uploads the card and the shards only (`storage.publish.PUBLISHED_PATTERNS`) with
`HfApi.upload_folder`; remote shards that the dataset no longer has are deleted in the same
commit, so the repo never mixes rows of two builds. Resuming is the library's: with `hf_xet`
installed the upload is committed in batches and a rerun continues after the last one;
without it, files the Hub already stores are not sent again (the LFS batch answer says so),
and the commit is atomic. Either way, rerunning the same export finishes an interrupted one.

The token is `huggingface_hub`'s: HF_TOKEN, else the login saved by `hf auth login`. It is
handed to the client and to nothing else, never printed, logged or written; error messages
from the Hub are scrubbed of it just in case. HF_ENDPOINT selects another Hub (a mirror, or
the local test server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathsynth.storage.publish import (
    DATA_PATTERNS,
    PUBLISHED_PATTERNS,
    ExportError,
    prepare_export,
)

REPO_TYPE = "dataset"


def export_hub(
    out: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Upload the publishable files of `out` to the dataset repo `repo_id`; returns
    {repo_id, revision, url, commit, files}.

    Failure modes (ExportError, one line): no token; a bad repo id; not a finished dataset
    (see `prepare_export`); `--private` asked for a repo that exists and is public; the Hub
    refused a request or could not be reached (its message, without the token).
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    token = get_token()
    if not token:
        raise ExportError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login`, then export again"
        )
    files = prepare_export(out, repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    # The client's per-file progress bars would bury a failure's one-line error.
    bars_were_off = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        url = api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        if private and not api.repo_info(repo_id, repo_type=REPO_TYPE).private:
            raise ExportError(
                f"{repo_id} exists and is public; --private does not change an existing "
                "repo's visibility: make it private on the Hub, or export to a new repo"
            )
        if revision:
            api.create_branch(repo_id, repo_type=REPO_TYPE, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type=REPO_TYPE,
            folder_path=out,
            revision=revision,
            allow_patterns=PUBLISHED_PATTERNS,
            delete_patterns=DATA_PATTERNS,
            commit_message=f"mathsynth export of {Path(out).name}",
        )
    except ExportError:
        raise
    except Exception as exc:  # the client raises HTTP, connection and validation errors
        raise ExportError(f"{repo_id}: {_scrub(exc, token)}") from None
    finally:
        if not bars_were_off:
            enable_progress_bars()
    return {
        "repo_id": repo_id,
        "revision": revision or "main",
        "url": str(url),
        "commit": getattr(info, "oid", None),
        "files": files,
    }


def _scrub(exc: BaseException, token: str) -> str:
    """The first line of an error, with the token masked should the server echo it."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    message = lines[0] if lines else type(exc).__name__
    return message.replace(token, "***")
