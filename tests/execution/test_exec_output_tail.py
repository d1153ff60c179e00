"""Reading a job's output incrementally (``output_tail``) and the state lines of a poll loop
(``job_watch``): nothing repeated, nothing lost between polls, floods cut to the most recent
lines with a marker, a state logged once per change. Real files; no backend needed."""

from __future__ import annotations

from pathlib import Path

from ccat_assets.execution.job_watch import JobOutput, JobWatch
from ccat_assets.execution.jobs import JobStatus
from ccat_assets.execution.output_tail import COUNT_SCAN_BYTES, FileTail, TailBounds, last_lines

BOUNDS = TailBounds(max_lines=3, max_bytes=200)


def _append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def test_each_line_is_shown_once_and_an_unfinished_line_waits_for_its_newline(
        tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    tail = FileTail(path)
    assert tail.read_new(BOUNDS) is None  # not written yet
    _append(path, "one\ntw")
    assert tail.read_new(BOUNDS).lines == ["one"]
    assert tail.read_new(BOUNDS) is None  # nothing new, "tw" still unfinished
    _append(path, "o\nthree\n")
    assert tail.read_new(BOUNDS).lines == ["two", "three"]
    _append(path, "last words")
    assert tail.read_new(BOUNDS) is None
    assert tail.read_new(BOUNDS, final=True).lines == ["last words"]  # the job ended
    assert tail.offset == path.stat().st_size


def test_a_flood_shows_its_last_lines_and_says_how_many_were_skipped(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    tail = FileTail(path)
    _append(path, "".join(f"line {i}\n" for i in range(1000)))
    chunk = tail.read_new(BOUNDS)
    assert chunk.lines == ["line 997", "line 998", "line 999"]
    assert chunk.skipped_lines == 997 and chunk.skipped_bytes == 0
    assert chunk.text().splitlines()[0] == "\u2026 997 lines skipped"
    _append(path, "after\n")
    assert tail.read_new(BOUNDS).lines == ["after"]  # and on from there


def test_a_flood_beyond_the_count_scan_is_cut_by_bytes(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    tail = FileTail(path)
    _append(path, "x" * (3 * COUNT_SCAN_BYTES) + "\nshort\n")
    chunk = tail.read_new(BOUNDS)
    assert chunk.lines == ["short"]
    assert chunk.skipped_bytes > COUNT_SCAN_BYTES  # not read, only named
    assert "kB more skipped" in chunk.text()


def test_a_replaced_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    tail = FileTail(path)
    _append(path, "a long first line\nsecond\n")
    tail.read_new(BOUNDS)
    path.write_text("new\n")
    assert tail.read_new(BOUNDS).lines == ["new"]


def test_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "stderr.log"
    assert last_lines(path, 5) == []
    path.write_text("".join(f"err {i}\n" for i in range(50)))
    assert last_lines(path, 3) == ["err 47", "err 48", "err 49"]
    assert last_lines(path, 3, max_bytes=14) == ["err 48", "err 49"]  # a cut line is dropped


def test_states_are_logged_on_change_and_output_per_job(tmp_path: Path) -> None:
    lines: list[str] = []
    outputs = {j: JobOutput(tmp_path / f"{j}.out", tmp_path / f"{j}.err") for j in ("1", "2")}
    watch = JobWatch(lines.append, {"1": "run 10", "2": "run 11"}, outputs, BOUNDS)
    held = JobStatus("1", "pending", reason="JobHeldUser")
    queued = JobStatus("2", "pending", reason="Priority")
    watch.observe({"1": held, "2": queued})
    watch.observe({"1": held, "2": queued})  # nothing changed: nothing logged
    assert lines == ["run 10: job 1 pending (JobHeldUser)\nrun 11: job 2 pending (Priority)",
                     "batch: 0 of 2 jobs done, 0 running, 2 pending"]
    lines.clear()
    _append(tmp_path / "1.out", "hello from 1\n")
    _append(tmp_path / "1.err", "warning from 1\n")
    watch.observe({"1": JobStatus("1", "running", node="c1"), "2": queued})
    assert lines == ["run 10: job 1 running on c1",
                     "run 10 stdout:\nhello from 1\nrun 10 stderr:\nwarning from 1",
                     "batch: 0 of 2 jobs done, 1 running, 1 pending"]
    lines.clear()
    _append(tmp_path / "1.err", "dying")
    watch.observe({"1": JobStatus("1", "failed", exit_code=1, reason="exit code 1"),
                   "2": JobStatus("2", "running", node="c2")})
    assert lines == ["run 11: job 2 running on c2", "run 10 stderr:\ndying",
                     "batch: 1 of 2 jobs done, 1 running, 0 pending"]


def test_output_per_poll_is_bounded_packed_and_the_rest_comes_next_poll(
        tmp_path: Path) -> None:
    lines: list[str] = []
    ids = [str(i) for i in range(5)]
    outputs = {j: JobOutput(tmp_path / f"{j}.out", tmp_path / f"{j}.err") for j in ids}
    # a section is 2 lines (header, line): 4 lines a message, one message a poll
    watch = JobWatch(lines.append, {j: f"run {j}" for j in ids}, outputs,
                     TailBounds(max_lines=3, max_bytes=200, message_lines=4, max_messages=1))
    running = {j: JobStatus(j, "running", node="c1") for j in ids}
    for j in ids:
        _append(tmp_path / f"{j}.out", f"from {j}\n")

    def shown() -> list[list[str]]:
        out = [[x.split()[1] for x in m.splitlines() if x.endswith(" stdout:")]
               for m in lines if " stdout:" in m]
        lines.clear()
        return out

    watch.observe(running)
    assert shown() == [["0", "1"]]  # two jobs packed into one message
    watch.observe(running)
    assert shown() == [["2", "3"]]
    _append(tmp_path / "0.out", "again\n")
    watch.observe(running)
    assert shown() == [["4", "0"]]  # the one left over first, then round again
    _append(tmp_path / "1.out", "last\n")
    _append(tmp_path / "2.out", "last\n")
    _append(tmp_path / "3.out", "last\n")
    ended = {j: JobStatus(j, "completed", exit_code=0) for j in ids}
    watch.observe(ended)  # jobs that ended are read to their end, whatever the budget,
    assert shown() == [["1", "2", "3"]]  # and the poll's last message takes what is left
