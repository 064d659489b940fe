"""``aerec recommend`` gives the same top-10 as the Python API, from every input form, and turns
bad input into one ``error:`` line with exit status 2.

Guards against: the CLI growing its own logic (results differing from the API), files whose
forms (header, titles with commas, JSON shapes) are misread, and tracebacks for user mistakes.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aerec.cli import app, main
from aerec.recommend.inputs import parse_rate, read_ratings_file

from .conftest import USER_BASE, movie_id

runner = CliRunner()
RATINGS = [("Toy Story", 5), ("Matrix, The", 5), (str(movie_id(5)), 5), ("Beta Movie 30", 1)]


def cli_json(*args: str) -> dict:
    result = runner.invoke(app, ["recommend", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def api_top(recommender, ratings) -> list[int]:
    return recommender.recommend(ratings, k=10).movie_ids


def ids(payload: dict) -> list[int]:
    return [item["movie_id"] for item in payload["items"]]


def test_rate_options_match_the_api(planted_run, recommender):
    rates = [x for title, stars in RATINGS for x in ("--rate", f"{title}={stars}")]
    payload = cli_json(str(planted_run), *rates)
    assert ids(payload) == api_top(recommender, RATINGS)
    assert payload == json.loads(json.dumps(recommender.recommend(RATINGS).to_dict()))


def test_csv_file_with_header_and_commas_in_titles(planted_run, recommender, tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("movie,rating\n# my favourites\nToy Story,5\nMatrix, The,5\n"
                   f"{movie_id(5)},5\n\"Beta Movie 30\",1\n")
    assert ids(cli_json(str(planted_run), "--ratings", str(csv))) == api_top(recommender, RATINGS)
    no_header = tmp_path / "plain.csv"
    no_header.write_text("toy story,5\n\"Matrix, The\",5\n" f"{movie_id(5)},5\nbeta movie 30,1\n")
    assert ids(cli_json(str(planted_run), "--ratings", str(no_header))) == \
        api_top(recommender, RATINGS)


@pytest.mark.parametrize("content", [
    [{"title": "Toy Story", "rating": 5}, {"title": "Matrix, The", "rating": 5},
     {"movie_id": movie_id(5), "rating": 5}, {"title": "Beta Movie 30", "rating": 1}],
    {"Toy Story": 5, "Matrix, The": 5, str(movie_id(5)): 5, "Beta Movie 30": 1},
    [["Toy Story", 5], ["Matrix, The", 5], [movie_id(5), 5], ["Beta Movie 30", 1]],
])
def test_json_file_forms(planted_run, recommender, tmp_path, content):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(content))
    assert ids(cli_json(str(planted_run), "--ratings", str(path))) == api_top(recommender, RATINGS)


def test_known_user_and_table_output(planted_run, recommender):
    user = USER_BASE + 11
    payload = cli_json(str(planted_run / "best.pt"), "--user", str(user), "--k", "5")
    assert ids(payload) == recommender.recommend_for_user(user, k=5).movie_ids
    table = runner.invoke(app, ["recommend", str(planted_run), "--user", str(user), "--explain"])
    assert table.exit_code == 0, table.output
    first = recommender.recommend_for_user(user).items[0]
    assert first.title in table.output and "predicted" in table.output
    assert "most similar users" in table.output
    filtered = cli_json(str(planted_run), "--rate", "toy story=5", "--year-min", "1990",
                        "--year-max", "1999", "--min-ratings", "1", "--ranking", "lcb")
    assert filtered["ranking"] == "lcb:0.25"
    assert all(1990 <= item["year"] <= 1999 for item in filtered["items"])


def test_no_ratings_prints_the_fallback(planted_run):
    result = runner.invoke(app, ["recommend", str(planted_run), "--k", "3"])
    assert result.exit_code == 0 and "fallback" in result.output


@pytest.mark.parametrize("args, message", [
    (["--rate", "the game=5"], "matches 2 movies"),
    (["--rate", "Nonexistent Film=4"], "no movie titled"),
    (["--rate", "toy story=9"], "outside this model's scale"),
    (["--rate", "toy story"], "expected MOVIE=RATING"),
    (["--user", "1"], "not in this model's training data"),
    (["--user", str(USER_BASE), "--rate", "toy story=5"], "either --user"),
    (["--rate", "toy story=5", "--ranking", "bogus"], "unknown ranking"),
])
def test_errors_are_one_line_and_exit_2(planted_run, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", str(planted_run), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in " ".join(err.split())
    assert "Traceback" not in err


def test_bad_files_name_the_line(planted_run, tmp_path, capsys, recommender):
    bad = tmp_path / "bad.csv"
    bad.write_text("movie,rating\ntoy story,5\nthe game,4\n")
    with pytest.raises(SystemExit):
        main(["recommend", str(planted_run), "--ratings", str(bad)])
    err = "".join(capsys.readouterr().err.split())  # rich may wrap the long path
    assert err.startswith("error:") and f"{bad}:3:" in err and "matches2movies" in err
    bad.write_text("toy story,lots\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: rating 'lots' is not a number"):
        read_ratings_file(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"title": "toy story", "rating": 5},')
    with pytest.raises(ValueError, match="not valid JSON"):
        read_ratings_file(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('[{"title": "toy story", "rating": 11}]')
    with pytest.raises(ValueError, match="entry 1: rating 11"):
        read_ratings_file(wrong, recommender)
    assert parse_rate("Title = With = Signs=4") == ("Title = With = Signs", "4")


def test_table_echoes_typed_titles_and_says_why_this_order(planted_run, recommender):
    result = runner.invoke(app, ["recommend", str(planted_run), "--rate", "the matrix=5",
                                 "--rate", f"{movie_id(5)}=5", "--k", "3"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "the matrix → Matrix, The (1999) · id 103" in out
    assert recommender.recommend({"the matrix": 5}).order_note.split(",")[0] in out
    assert "ranking:" not in out and "blend:2" not in out
    payload = cli_json(str(planted_run), "--rate", "the matrix=5")
    assert payload["resolved"] == [{"query": "the matrix", "movie_id": movie_id(1),
                                    "title": "Matrix, The", "year": 1999}]
    assert payload["order_note"].startswith("Ordered by")


def test_an_ambiguous_title_lists_the_candidates_and_exits_2(planted_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", str(planted_run), "--rate", "the game=5"])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"Game, The (1980) = id {movie_id(21)}" in err
    assert f"Game, The (1997) = id {movie_id(3)}" in err and "add the year" in err


@pytest.mark.parametrize("name", ["all.parquet", "all.csv"])
def test_all_users_writes_the_file(planted_run, recommender, tmp_path, name):
    out = tmp_path / name
    result = runner.invoke(app, ["recommend", str(planted_run), "--all-users", "--out", str(out),
                                 "--k", "4", "--batch-size", "50"])
    assert result.exit_code == 0, result.output
    assert "users/s" in result.output and f"for {len(recommender.user_ids)} users" in result.output
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pq.read_table(out) if name.endswith("parquet") else pacsv.read_csv(out)
    assert table.num_rows == 4 * len(recommender.user_ids)
    user = USER_BASE + 9
    mine = [m for u, m in zip(table["user_id"].to_pylist(), table["movie_id"].to_pylist())
            if u == user]
    assert mine == recommender.recommend_for_user(user, k=4, explain=False).movie_ids


@pytest.mark.parametrize("args, message", [
    (["--all-users"], "needs --out"),
    (["--all-users", "--out", "x.txt"], ".parquet or .csv"),
    (["--out", "x.parquet"], "add --all-users"),
    (["--all-users", "--out", "x.csv", "--rate", "toy story=5"], "drop --user"),
])
def test_all_users_option_errors(planted_run, capsys, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", str(planted_run), *args])
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert list(tmp_path.iterdir()) == []
