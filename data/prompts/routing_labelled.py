"""Build routing_labelled.csv: PartiPrompts labelled with a content type, plus hand-written prompts.

Run from the repository root: ``python data/prompts/routing_labelled.py``. Each prompt is labelled by
what the user wants made. The rules, in priority order:

1. artistic      an art medium or rendering style is named for the image (painting, watercolor, gouache,
                 block print, pixel art, cartoon, illustration, sketch, poster, "in the style of <painter>",
                 ...), whatever the subject, or the prompt is from the Arts category. An architectural style
                 ("art deco", "art nouveau", "baroque", "gothic", ...) is not a medium, nor is "latte art",
                 "concept art" or "anime";
2. character     a character-design or game-art deliverable about a person or creature (turnaround, model
                 or expression sheet, concept art, character design, chibi, OC, NPC, D&D character,
                 VTuber, sprite sheet, cosplay), an anime or manga character, or the People category
                 (people, figures, groups), unless rule 1 applies; anime or concept art of anything else
                 is artistic;
3. architectural Indoor Scenes, a building, room, street or built structure (landmarks included) in a
                 scene, landmark or artifact prompt, or a building named with an architectural style in any
                 category;
4. photorealistic a photograph is asked for (photo, DSLR, lens and film jargon), or a plain real-world
                 subject (animals, vehicles, food, plants, outdoor scenes) without any style.

Prompts that fit none (abstract words, writing, geometry) are left out, and so are the ones listed in
EXCLUDED after reading the output by hand (mixed or misleading content). Related prompts (the same
subject in different styles, "a painting of a house on a mountain" / "a photograph of ...") share a
group, and a whole group goes to one split, so the held-out prompts are unlike the training ones.

routing_written.csv (prompt, label, register) holds prompts written by hand, already labelled by these
rules, in the registers users type (camera and film jargon, weighted tag lists, design-sheet and game-art
vocabulary, buildings named by style or type, art movements and media, plain, long and confusable
prompts). They are appended to the `train` split only (source_category "written"), so the `test` split
stays PartiPrompts-only and comparable between versions.
"""

import csv
import hashlib
import re
from pathlib import Path

HERE = Path(__file__).parent
ROUTES = {"photorealistic", "artistic", "architectural", "character"}
# An art medium or rendering style named for the image. Bare "art" counts, except in "art deco" / "art
# nouveau" (building styles), "latte art" (a drink), "concept art" (rule 2) and art venues ("art gallery").
ART = re.compile(
    r"\b(painting|painted|drawing|drawn|cartoon|(?<!reading a )comic|watercolou?r|gouache|acrylic|"
    r"oil[- ](?:painting|on[- ]canvas)|oils|sketch|illustration|illustrated|graffiti|mosaic|stained glass|"
    r"pixel art|vector|poster|sculpture|statue(?! of liberty)|origami|woodcut|linocut|block print|"
    r"etching|lithograph|screen ?print|risograph|ukiyo|sumi-e|ink wash|ink-and-wash|"
    r"chinese ink|impressionis[mt]|impressionistic|expressionis[mt]|cubis[mt]|fauvis[mt]|pointill?is[mt]|"
    r"surreal|surrealis[mt]|abstract|pop art|de stijl|vaporwave|synthwave|minecraft|fresco|mural|collage|"
    r"caricature|style of|in the style|van gogh|monet|picasso|dali|rembrandt|vermeer|hokusai|"
    r"(?<!latte )(?<!concept )art(?! deco| nouveau| gallery| museum| studio| school)|artwork|pencil|"
    r"crayon|charcoal|pastels|(?:oil|chalk|soft) pastel|doodle|emoji|icon|logo|clip art|storybook|picture book)\b",
    re.I,
)
# Character-design and game-art deliverables; anime, manga and concept art name a character when a person
# or creature is drawn, and are a rendering style (artistic) otherwise.
CHARACTER_DESIGN = re.compile(
    r"\b(turnaround|model sheet|character sheet|reference sheet|expression sheet|character design|"
    r"character concept|chibi|oc|original character|npc|d&d|dnd|dungeons and dragons|rpg character|"
    r"player character|vtuber|sprite sheet|cosplay|cosplayer|t-pose|a-pose)\b",
    re.I,
)
STYLISED = re.compile(r"\b(anime|manga|concept art)\b", re.I)
CREATURE = re.compile(
    r"\b(man|woman|men|women|boy|girl|1boy|1girl|child|children|person|people|figure|hero|heroine|villain|"
    r"warrior|knight|swordsman|protagonist|wizard|witch|mage|elf|dwarf|orc|goblin|samurai|ninja|pirate|"
    r"princess|prince|king|queen|soldier|robot|gundam|mecha|dragon|monster|creature|character|portrait)\b",
    re.I,
)
BUILT = re.compile(
    r"\b(house|houses|building|buildings|skyscraper|tower|castle|cathedral|church|chapel|temple|pyramid|"
    r"bridge|palace|mansion|villa|cabin|cottage|barn|lighthouse|room|kitchen|bathroom|bedroom|living room|"
    r"library|restaurant|hotel|lobby|interior|hallway|staircase|facade|architecture|skyline|city|street|"
    r"dome|store front|storefront|opera house|taj mahal|eiffel|colosseum|great wall|stonehenge|parthenon|"
    r"monument|museum|statue of liberty|sagrada familia|millennium wheel)\b",
    re.I,
)
# A building style: names a building when a built structure is in the prompt, never an art medium alone.
BUILDING_STYLE = re.compile(
    r"\b(art deco|art nouveau|gothic|baroque|rococo|brutalis[mt]|bauhaus|mid-century|craftsman|victorian|"
    r"tudor|georgian|neoclassical|romanesque|beaux-arts|modernist|japandi|palladian)\b",
    re.I,
)
PHOTO = re.compile(
    r"\b(photo|photos|photograph|photographs|photography|dslr|mirrorless|photorealistic|realistic|close-up|"
    r"closeup|shot|\d{2,3} ?mm|f/\d[\d.]*|bokeh|telephoto|macro lens|wide-angle lens|long exposure|"
    r"shutter speed|film grain|35mm film|kodak|fujifilm|portra|ektar|cinestill|polaroid|raw photo|drone)\b",
    re.I,
)
PLACES = {"Indoor Scenes", "Outdoor Scenes", "World Knowledge", "Artifacts"}  # where a building can be the subject
REAL_WORLD = {"Animals", "Vehicles", "Food & Beverage", "Produce & Plants", "Outdoor Scenes"}
PLAIN_CHALLENGES = {"Basic", "Simple Detail", "Fine-grained Detail", "Complex", "Perspective"}
STYLE_PREFIX = re.compile(r"^.*?\b(of|about)\s+", re.I)

EXCLUDED = {
    "a room",  # too little to route on
    "a ceiling fan with five brown blades",
    "a grand piano with a white bench",
    "a coffee table with a magazine on it",
    "a bunch of laptops piled on a sofa",
    "a piano with Christmas lights all over it",
    "a ceiling fan",
    "a ceiling fan with an ornate light fixture",
    "red and yellow balloons hanging from a ceiling fan",
    "a large present with a red ribbon to the left of a Christmas tree",
    "a cloud in the shape of a castle",
    "The frog found itself in the newspaper",
    # read by hand: a creature or a vehicle is the subject, the building only its setting
    "A teddy bear wearing a motorcycle helmet and cape is standing in front of Loch Awe with Kilchurn Castle "
    "behind him",
    "A teddy bear wearing a motorcycle helmet and cape is driving a speed boat near the Golden Gate Bridge",
    "A teddy bear wearing a motorcycle helmet and cape is car surfing on a taxi cab in New York City",
    "a whale breaching in front of the Sydney Opera House",
    "a diplodocus standing in front of the Millennium Wheel",
    "Horses pulling a carriage on the moon's surface, with the Statue of Liberty and Great Pyramid in the "
    "background. The Planet Earth can be seen in the sky.",
    "an F1 race car in a Manhattan street",
    "a prop plane flying low over the Great Wall",
    "a gorilla climbing up the side of the Great Pyramid",
    "a beat-up truck at the base of the Great Pyramid",
    "a massive robot with a coffee cup head. it is standing in the street with one foot smashing a car.",
    "A large city fountain that has milk instead of water. Several cats are leaning into the fountain.",
    "a giant gorilla at the top of the Empire State Building",
    "a small kitchen with a white goat in it",
    "a tornado with a house carried along at its top",
    "an elephant walking on the Great Wall",
    "a spaceship landing on the Great Wall",
    "a dragon perched on top of the Great Pyramid",
    "a robot cooking in the kitchen",
    "An empty fireplace with a television above it. The TV shows a lion hugging a giraffe.",
    "three violins lying on the floor",
    "a ceiling fan with four white blades",
    "two pianos next to each other",
    "a piano with an open song book above the keys",
    "a yellow wall with two framed sketches",
    "A castle made of cardboard.",
    "a futuristic city in synthwave style",
    "A high resolution photo of a donkey in a clown costume giving a lecture at the front of a lecture hall. "
    "The blackboard has mathematical equations on it. There are many students in the lecture hall.",
}
NOT_A_SCENE = re.compile(r"\b(diagram|map|satellite image|blueprint)\b", re.I)  # a chart, not a view


def label(prompt: str, category: str, challenge: str) -> str | None:
    if (
        prompt in EXCLUDED
        or NOT_A_SCENE.search(prompt)
        or category in {"Abstract", "Writing & Symbols"}
        or challenge == "Writing & Symbols"
    ):
        return None
    if category == "Arts" or ART.search(prompt):
        return "artistic"
    if CHARACTER_DESIGN.search(prompt) or (
        STYLISED.search(prompt) and (category == "People" or CREATURE.search(prompt))
    ):
        return "character"
    if STYLISED.search(prompt):
        return "artistic"
    if category == "People":
        return "character"
    if (
        category == "Indoor Scenes"
        or (category in PLACES and BUILT.search(prompt))
        or (BUILDING_STYLE.search(prompt) and BUILT.search(prompt))
    ):
        return "architectural"
    if PHOTO.search(prompt) or (category in REAL_WORLD and challenge in PLAIN_CHALLENGES):
        return "photorealistic"
    return None


def group(prompt: str) -> str:
    """Prompts about the same subject share a group: drop a leading "a painting of"-style phrase."""
    subject = prompt.lower()
    if re.match(
        r"^(an? |the )?[\w\s-]{0,40}?\b(painting|photograph|photo|drawing|cartoon|sketch|image|picture|"
        r"illustration|portrait|comic|close-up|graffiti|sculpture)\b",
        subject,
    ):
        subject = STYLE_PREFIX.sub("", subject, count=1)
    return " ".join(re.findall(r"[a-z]+", subject)[:4])


def main() -> None:
    with open(HERE / "partiprompts" / "PartiPrompts.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for row in rows:
        prompt = " ".join(row["Prompt"].split())
        content = label(prompt, row["Category"], row["Challenge"])
        if content is None:
            continue
        bucket = int(hashlib.sha256(group(prompt).encode()).hexdigest(), 16) % 10
        out.append(
            {
                "prompt": prompt,
                "label": content,
                "split": "test" if bucket < 3 else "train",
                "source_category": row["Category"],
            }
        )
    with open(HERE / "routing_written.csv", newline="") as fh:
        written = list(csv.DictReader(fh))
    seen = {row["prompt"].lower() for row in out}
    for row in written:
        prompt = " ".join(row["prompt"].split())
        if prompt.lower() in seen:
            raise ValueError(f"routing_written.csv repeats a prompt: {prompt!r}")
        if row["label"] not in ROUTES:
            raise ValueError(f"routing_written.csv has an unknown label: {row['label']!r}")
        seen.add(prompt.lower())
        out.append({"prompt": prompt, "label": row["label"], "split": "train", "source_category": "written"})
    with open(HERE / "routing_labelled.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "label", "split", "source_category"])
        writer.writeheader()
        writer.writerows(out)


if __name__ == "__main__":
    main()
