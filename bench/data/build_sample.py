"""Rebuild the shipped sample dataset: python -m bench.data.build_sample

Speaks public-domain English passages with espeak-ng (Debian package espeak-ng; sox is
used to resample to 16 kHz) and writes them in the Hugging Face Hub's Parquet layout,
so they load through exactly the same `datasets` code path as Hub data. The reference
of each clip is the exact text handed to the synthesiser. Written with pyarrow because
datasets 5 encodes Audio through torchcodec, which needs CUDA libraries.

Sources: Moby-Dick (Melville, 1851), Pride and Prejudice (Austen, 1813), Alice's
Adventures in Wonderland (Carroll, 1865), A Tale of Two Cities (Dickens, 1859), the
Gettysburg Address (Lincoln, 1863), The Adventures of Sherlock Holmes (Doyle, 1892),
Walden (Thoreau, 1854), The Time Machine (Wells, 1895), Frankenstein (Shelley, 1818),
The Wonderful Wizard of Oz (Baum, 1900), and short sentences written for this project.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"

# (voice, words per minute, text). Voices and rates vary so clips differ in timing.
CLIPS: list[tuple[str, int, str]] = [
    ("en-us", 110, "Call me Ishmael."),
    ("en-gb", 150, "Please call Stella. Ask her to bring these things."),
    ("en-us+f2", 150, "The meeting starts at nine tomorrow."),
    ("en-gb-x-rp", 150, "Mr. Smith has two cats and a dog."),
    ("en-us+m3", 160, "It was the best of times, it was the worst of times."),
    ("en-gb+f3", 150, "Down, down, down. Would the fall never come to an end?"),
    (
        "en-us",
        165,
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife.",
    ),
    (
        "en-gb",
        160,
        "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do.",
    ),
    (
        "en-us+f2",
        170,
        "To Sherlock Holmes she is always the woman. I have seldom heard him mention her under any other name.",
    ),
    (
        "en-gb-x-rp",
        160,
        "Four score and seven years ago our fathers brought forth on this continent a new nation, "
        "conceived in liberty, and dedicated to the proposition that all men are created equal.",
    ),
    (
        "en-us+m3",
        165,
        "I went to the woods because I wished to live deliberately, to front only the essential facts "
        "of life, and see if I could not learn what it had to teach.",
    ),
    (
        "en-gb+f3",
        170,
        "Dorothy lived in the midst of the great Kansas prairies, with Uncle Henry, who was a farmer, "
        "and Aunt Em, who was the farmer's wife.",
    ),
    (
        "en-us",
        160,
        "The Time Traveller, for so it will be convenient to speak of him, was expounding a recondite "
        "matter to us. His grey eyes shone and twinkled, and his usually pale face was flushed and "
        "animated.",
    ),
    (
        "en-gb",
        165,
        "You will rejoice to hear that no disaster has accompanied the commencement of an enterprise "
        "which you have regarded with such evil forebodings. I arrived here yesterday, and my first "
        "task is to assure my dear sister of my welfare.",
    ),
    ("en-us+f2", 160, "The train leaves platform 4 at 6:15 in the evening."),
    (
        "en-gb-x-rp",
        155,
        "Whenever I find myself growing grim about the mouth, I account it high time to get to sea.",
    ),
    (
        "en-us+m3",
        170,
        "There was no possibility of taking a walk that day. We had been wandering, indeed, in the "
        "leafless shrubbery an hour in the morning.",
    ),
    (
        "en-gb+f3",
        160,
        "Now, we are engaged in a great civil war, testing whether that nation, or any nation so "
        "conceived and so dedicated, can long endure. We are met on a great battlefield of that war.",
    ),
    (
        "en-us",
        170,
        "So she was considering in her own mind, as well as she could, for the hot day made her feel "
        "very sleepy and stupid, whether the pleasure of making a daisy chain would be worth the "
        "trouble of getting up and picking the daisies, when suddenly a White Rabbit with pink eyes "
        "ran close by her.",
    ),
    (
        "en-gb",
        165,
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
        "of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the "
        "season of Light, it was the season of Darkness, it was the spring of hope, it was the winter "
        "of despair.",
    ),
    (
        "en-us+f2",
        165,
        "Some years ago, never mind how long precisely, having little or no money in my purse, and "
        "nothing particular to interest me on shore, I thought I would sail about a little and see "
        "the watery part of the world. It is a way I have of driving off the spleen and regulating "
        "the circulation.",
    ),
    (
        "en-gb-x-rp",
        160,
        "My dear Mr. Bennet, said his lady to him one day, have you heard that Netherfield Park is let "
        "at last? Mr. Bennet replied that he had not. But it is, returned she; for Mrs. Long has just "
        "been here, and she told me all about it. Mr. Bennet made no answer.",
    ),
    (
        "en-us+m3",
        165,
        "The rabbit hole went straight on like a tunnel for some way, and then dipped suddenly down, "
        "so suddenly that Alice had not a moment to think about stopping herself before she found "
        "herself falling down a very deep well. Either the well was very deep, or she fell very "
        "slowly, for she had plenty of time as she went down to look about her and to wonder what "
        "was going to happen next.",
    ),
    (
        "en-gb+f3",
        160,
        "But, in a larger sense, we can not dedicate, we can not consecrate, we can not hallow this "
        "ground. The brave men, living and dead, who struggled here, have consecrated it, far above "
        "our poor power to add or detract. The world will little note, nor long remember what we say "
        "here, but it can never forget what they did here.",
    ),
    (
        "en-us",
        165,
        "I had called upon my friend, Mr. Sherlock Holmes, one day in the autumn of last year and "
        "found him in deep conversation with a very stout, florid faced, elderly gentleman with fiery "
        "red hair. With an apology for my intrusion, I was about to withdraw when Holmes pulled me "
        "abruptly into the room and closed the door behind me. You could not possibly have come at a "
        "better time, my dear Watson, he said cordially.",
    ),
    (
        "en-gb",
        150,
        "I wished to live deep and suck out all the marrow of life, to live so sturdily and Spartan "
        "like as to put to rout all that was not life, to cut a broad swath and shave close, to drive "
        "life into a corner, and reduce it to its lowest terms, and, if it proved to be mean, why "
        "then to get the whole and genuine meanness of it, and publish its meanness to the world; or "
        "if it were sublime, to know it by experience, and be able to give a true account of it in my "
        "next excursion.",
    ),
    (
        "en-us+f2",
        160,
        "It is for us the living, rather, to be dedicated here to the unfinished work which they who "
        "fought here have thus far so nobly advanced. It is rather for us to be here dedicated to the "
        "great task remaining before us, that from these honored dead we take increased devotion to "
        "that cause for which they gave the last full measure of devotion, that we here highly resolve "
        "that these dead shall not have died in vain, that this nation, under God, shall have a new "
        "birth of freedom, and that government of the people, by the people, for the people, shall not "
        "perish from the earth.",
    ),
    (
        "en-gb-x-rp",
        165,
        "It was on a dreary night of November that I beheld the accomplishment of my toils. With an "
        "anxiety that almost amounted to agony, I collected the instruments of life around me, that I "
        "might infuse a spark of being into the lifeless thing that lay at my feet. It was already one "
        "in the morning; the rain pattered dismally against the panes, and my candle was nearly burnt "
        "out, when, by the glimmer of the half extinguished light, I saw the dull yellow eye of the "
        "creature open; it breathed hard, and a convulsive motion agitated its limbs.",
    ),
    (
        "en-us+m3",
        170,
        "Their house was small, for the lumber to build it had to be carried by wagon many miles. There "
        "were four walls, a floor and a roof, which made one room; and this room contained a rusty "
        "looking cookstove, a cupboard for the dishes, a table, three or four chairs, and the beds. "
        "Uncle Henry and Aunt Em had a big bed in one corner, and Dorothy a little bed in another "
        "corner. There was no garret at all, and no cellar, except a small hole dug in the ground, "
        "called a cyclone cellar, where the family could go in case one of those great whirlwinds "
        "arose, mighty enough to crush any building in its path.",
    ),
    ("en-gb+f3", 150, "Thank you very much, and good night."),
]


def _speak(voice: str, rate: int, text: str, out_wav: Path) -> None:
    raw = out_wav.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out_wav), "vol", "0.9"], check=True)


def write_hub_shard(rows: dict[str, list], out_dir: Path, split: str = "test") -> None:
    """Columns (an "audio" column of {bytes, path}, the rest strings) as one Parquet shard in
    the Hub's layout, with the feature metadata `datasets` reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = {name: {"dtype": "string", "_type": "Value"} for name in rows}
    features["audio"] = {"sampling_rate": 16000, "_type": "Audio"}
    table = pa.table(rows).replace_schema_metadata(
        {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    )
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_dir / "data" / f"{split}-00000-of-00001.parquet")


def write_sample(clips, out_dir: Path) -> None:
    """Spoken clips, (id, int16 samples, sample rate, text, voice) each, as a shipped sample:
    FLAC bytes in one Hub-layout Parquet shard, and manifest.json with each clip's length."""
    import soundfile as sf

    rows = {"id": [], "audio": [], "text": [], "voice": []}
    manifest = []
    for uid, samples, sample_rate, text, voice in clips:
        flac = io.BytesIO()
        sf.write(flac, samples, sample_rate, format="FLAC")
        rows["id"].append(uid)
        rows["audio"].append({"bytes": flac.getvalue(), "path": f"{uid}.flac"})
        rows["text"].append(text)
        rows["voice"].append(voice)
        manifest.append({"id": uid, "n_samples": len(samples), "sample_rate": sample_rate, "text": text})
    write_hub_shard(rows, out_dir)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    seconds = [m["n_samples"] / m["sample_rate"] for m in manifest]
    print(f"{len(manifest)} clips, {min(seconds):.1f} s to {max(seconds):.1f} s, {sum(seconds):.0f} s in all")


def build(out_dir: Path = SAMPLE_DIR) -> None:
    import soundfile as sf

    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install the Debian packages espeak-ng and sox")

    def spoken(tmp: Path):
        for index, (voice, rate, text) in enumerate(CLIPS):
            uid = f"sample-{index:03d}"
            _speak(voice, rate, text, tmp / f"{uid}.wav")
            samples, sample_rate = sf.read(tmp / f"{uid}.wav", dtype="int16")
            yield uid, samples, sample_rate, text, voice

    with tempfile.TemporaryDirectory() as tmp:
        write_sample(spoken(Path(tmp)), out_dir)


if __name__ == "__main__":
    build()
