"""The `explain` dataset: short explanations of concepts from a fact table (OpenAI-messages records)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Concept:
    """One fact-table row: `{name} is {definition}.` plus how it works, an example and why it matters."""

    name: str
    field: str
    definition: str
    mechanism: str
    example: str
    importance: str


CONCEPTS = [
    Concept(
        "photosynthesis", "biology",
        "the process by which plants, algae and some bacteria turn light into chemical energy",
        "Chlorophyll in the leaves absorbs sunlight, and that energy joins carbon dioxide and water into sugar, "
        "releasing oxygen.",
        "A sunflower growing taller through the summer is building its stem from sugar made this way.",
        "Almost every food chain on Earth starts with it, and it produces the oxygen we breathe.",
    ),
    Concept(
        "evolution", "biology",
        "the change in the inherited traits of living populations over many generations",
        "Individuals vary, some variations help survival and reproduction, and those traits become more common.",
        "Bacteria that survive an antibiotic pass their resistance on, so the whole population becomes resistant.",
        "It explains both the variety of life and why all organisms share a common chemistry.",
    ),
    Concept(
        "the immune system", "biology",
        "the body's network of cells and organs that defends it against infection",
        "White blood cells recognise foreign molecules, attack invaders and remember them for next time.",
        "After chickenpox, the body usually recognises the virus quickly and you do not get sick from it again.",
        "Without it, even a small cut or a common cold could become life-threatening.",
    ),
    Concept(
        "DNA", "biology",
        "the molecule that stores the genetic instructions of living things",
        "Its two strands carry a sequence of four bases, and cells read that sequence to build proteins.",
        "Children resemble their parents because each parent passes on half of their DNA.",
        "It lets traits be inherited and makes tools like genetic testing possible.",
    ),
    Concept(
        "an ecosystem", "biology",
        "a community of living things together with the physical environment they share",
        "Energy flows from plants to the animals that eat them, and nutrients are recycled by decomposers.",
        "A pond holds algae, insects, frogs, fish and bacteria that all depend on one another.",
        "Healthy ecosystems clean water, pollinate crops and keep soil fertile.",
    ),
    Concept(
        "metabolism", "biology",
        "the set of chemical reactions that keep a living body running",
        "Some reactions break food down to release energy, and others use that energy to build and repair tissue.",
        "Your body keeps burning energy while you sleep, just to keep your heart beating and your brain working.",
        "It sets how much energy a body needs and how it uses nutrients.",
    ),
    Concept(
        "a vaccine", "biology",
        "a preparation that trains the immune system to recognise a germ without causing the disease",
        "It shows the body a harmless piece or weakened form of the germ, so immune memory forms in advance.",
        "The measles vaccine protects most people for life after two doses.",
        "Vaccines have made diseases like smallpox disappear and saved millions of lives.",
    ),
    Concept(
        "gravity", "physics",
        "the force of attraction between any two objects that have mass",
        "The more mass objects have and the closer they are, the stronger they pull on each other.",
        "A dropped ball falls to the ground because the Earth pulls it down.",
        "It holds planets in orbit and keeps our atmosphere attached to the Earth.",
    ),
    Concept(
        "friction", "physics",
        "the force that resists two surfaces sliding against each other",
        "Tiny bumps on the surfaces catch on each other, turning motion into heat.",
        "Rubbing your hands together on a cold day warms them because of friction.",
        "It lets us walk without slipping and lets brakes stop a car.",
    ),
    Concept(
        "inertia", "physics",
        "the tendency of an object to keep doing what it is doing unless a force acts on it",
        "A resting object stays at rest and a moving object keeps moving in a straight line at the same speed.",
        "When a bus brakes suddenly, passengers lurch forward because their bodies keep moving.",
        "It is the reason seat belts are needed and is the heart of Newton's first law.",
    ),
    Concept(
        "electric current", "physics",
        "the flow of electric charge through a material",
        "A voltage pushes electrons along a wire, and the current is how much charge passes a point each second.",
        "Turning on a lamp closes a circuit so current can flow through the bulb.",
        "Nearly every modern device depends on controlling current.",
    ),
    Concept(
        "a wave", "physics",
        "a disturbance that carries energy from place to place without carrying matter along",
        "Each part of the medium moves back and forth and passes the motion on to its neighbour.",
        "In a stadium wave, people stand and sit in turn while nobody leaves their seat.",
        "Sound, light and radio signals all travel as waves.",
    ),
    Concept(
        "energy conservation", "physics",
        "the principle that energy cannot be created or destroyed, only changed from one form to another",
        "When something seems to lose energy, that energy has moved elsewhere, often as heat.",
        "A swinging pendulum trades height for speed and back again, slowly losing a little to air resistance.",
        "It lets engineers track exactly where the energy in a machine goes.",
    ),
    Concept(
        "magnetism", "physics",
        "the force produced by moving electric charges that attracts or repels certain materials",
        "In a magnet, countless tiny atomic magnets line up so their effects add together.",
        "A compass needle points north because it lines up with the Earth's magnetic field.",
        "Electric motors, generators and hard drives all rely on it.",
    ),
    Concept(
        "an atom", "chemistry",
        "the smallest unit of a chemical element",
        "A tiny, dense nucleus of protons and neutrons is surrounded by a cloud of electrons.",
        "A single grain of salt contains more than a billion billion atoms.",
        "Every material is built from atoms, so their structure explains chemistry.",
    ),
    Concept(
        "a chemical reaction", "chemistry",
        "a process in which substances change into new substances",
        "Bonds between atoms break and new bonds form, often giving off or taking in energy.",
        "When iron rusts, it reacts slowly with oxygen and water to form iron oxide.",
        "Cooking, burning fuel and digestion are all chemical reactions.",
    ),
    Concept(
        "an acid", "chemistry",
        "a substance that releases hydrogen ions when dissolved in water",
        "The more hydrogen ions it releases, the lower the pH and the stronger the acid.",
        "Lemon juice tastes sour because it contains citric acid.",
        "Acids matter in digestion, in batteries and in keeping soil healthy.",
    ),
    Concept(
        "a catalyst", "chemistry",
        "a substance that speeds up a chemical reaction without being used up",
        "It offers an easier path for the reaction, lowering the energy needed to get it started.",
        "A car's catalytic converter turns harmful exhaust gases into less harmful ones.",
        "Most industrial chemistry and every living cell depend on catalysts.",
    ),
    Concept(
        "diffusion", "chemistry",
        "the spreading of particles from where they are crowded to where they are sparse",
        "Particles move randomly, so on average more of them wander out of a crowded area than into it.",
        "The smell of fresh bread slowly fills a whole house.",
        "It moves oxygen from the lungs into the blood.",
    ),
    Concept(
        "a solution", "chemistry",
        "a mixture in which one substance is evenly dissolved in another",
        "Molecules of the dissolved substance spread out between the molecules of the liquid.",
        "Stirring sugar into tea makes a solution, and the sugar seems to disappear.",
        "Most chemistry in the body happens in watery solutions.",
    ),
    Concept(
        "erosion", "earth science",
        "the wearing away of rock and soil by water, wind or ice",
        "Moving water or wind picks up loose particles and carries them somewhere else.",
        "The Grand Canyon was carved by the Colorado River over millions of years.",
        "It shapes landscapes and can strip farmland of its fertile soil.",
    ),
    Concept(
        "a volcano", "earth science",
        "an opening in the Earth's crust where molten rock, gas and ash escape",
        "Magma rises because it is lighter than the surrounding rock, and pressure builds until it erupts.",
        "Mount Fuji in Japan is a volcano built up by many eruptions.",
        "Volcanoes create new land and fertile soil, but eruptions can be deadly.",
    ),
    Concept(
        "the water cycle", "earth science",
        "the continuous movement of water between the oceans, the air and the land",
        "Water evaporates, condenses into clouds, falls as rain or snow and flows back to the sea.",
        "A puddle that vanishes on a sunny afternoon has evaporated into the air.",
        "It delivers the fresh water that plants, animals and people need.",
    ),
    Concept(
        "plate tectonics", "earth science",
        "the theory that the Earth's outer shell is split into large plates that slowly move",
        "Heat from deep inside the Earth drives currents in the mantle that push and pull the plates.",
        "The Himalayas are still rising because the Indian plate pushes into the Eurasian plate.",
        "It explains earthquakes, volcanoes and the shapes of continents.",
    ),
    Concept(
        "climate", "earth science",
        "the average pattern of weather in a place over many years",
        "It depends on latitude, ocean currents, altitude and the makeup of the atmosphere.",
        "A single cold day does not change the fact that a desert has a hot climate.",
        "Farming, housing and water supply are planned around it.",
    ),
    Concept(
        "the greenhouse effect", "earth science",
        "the warming of a planet's surface by gases in its atmosphere that trap heat",
        "Sunlight warms the ground, and gases like carbon dioxide absorb some of the heat it gives off.",
        "A car parked in the sun gets hot inside for a similar reason.",
        "Without it Earth would be frozen, but adding more of these gases warms the climate.",
    ),
    Concept(
        "inflation", "economics",
        "a general rise in prices over time, which means money buys less",
        "When spending grows faster than the supply of goods, or costs rise, sellers raise prices.",
        "If bread costs $2 this year and $2.10 next year, prices rose by 5%.",
        "It erodes savings, so central banks try to keep it low and steady.",
    ),
    Concept(
        "supply and demand", "economics",
        "the idea that prices settle where the amount sellers offer matches the amount buyers want",
        "If buyers want more than is available the price rises, and if there is too much the price falls.",
        "Concert tickets for a popular band sell out and resell for more than their face value.",
        "It explains how markets set most prices without anyone planning them.",
    ),
    Concept(
        "interest", "economics",
        "the price paid for borrowing money, usually a percentage of the amount borrowed",
        "A lender charges a rate per year, and compound interest also charges interest on past interest.",
        "A savings account paying 3% a year turns $100 into $103 after one year.",
        "It rewards saving and makes borrowing costly, which shapes spending and investment.",
    ),
    Concept(
        "opportunity cost", "economics",
        "the value of the best alternative you give up when you make a choice",
        "Every choice uses limited time or money that could have gone somewhere else.",
        "An evening spent watching a film costs the evening you could have spent studying.",
        "It reminds us that nothing is truly free, even when no money changes hands.",
    ),
    Concept(
        "a budget", "economics",
        "a plan that lists expected income and spending over a period",
        "You write down what comes in, decide what goes out, and compare the plan with what really happens.",
        "A family might plan to spend $400 a month on food and track receipts to check.",
        "It helps people and governments avoid spending more than they have.",
    ),
    Concept(
        "taxation", "economics",
        "the way governments collect money from people and businesses to pay for public services",
        "Taxes are charged on things like income, purchases and property, at rates set by law.",
        "Sales tax is added to the price at the checkout.",
        "It funds roads, schools and hospitals.",
    ),
    Concept(
        "a black hole", "astronomy",
        "a region of space where gravity is so strong that nothing, not even light, can escape",
        "When a very massive star collapses, its matter is squeezed into a tiny space.",
        "Astronomers photographed the shadow of the black hole at the centre of the galaxy M87 in 2019.",
        "Black holes test our theories of gravity at their limits.",
    ),
    Concept(
        "a star", "astronomy",
        "a huge ball of hot gas that shines by nuclear fusion in its core",
        "Gravity squeezes hydrogen in the core until its nuclei fuse into helium, releasing energy.",
        "The Sun is a medium-sized star about 150 million kilometres away.",
        "Stars make most of the chemical elements, including those in our bodies.",
    ),
    Concept(
        "an orbit", "astronomy",
        "the curved path an object follows around another object because of gravity",
        "The object moves sideways fast enough that it keeps falling around the other body instead of into it.",
        "The Moon orbits the Earth about once every 27 days.",
        "Satellites for weather, GPS and phone calls all depend on stable orbits.",
    ),
    Concept(
        "a galaxy", "astronomy",
        "a vast system of stars, gas and dust held together by gravity",
        "Its stars orbit a shared centre, often around a supermassive black hole.",
        "Our Milky Way galaxy contains hundreds of billions of stars.",
        "Galaxies are the basic building blocks of the large-scale universe.",
    ),
    Concept(
        "the Big Bang", "astronomy",
        "the theory that the universe began in an extremely hot, dense state and has been expanding ever since",
        "As space expanded it cooled, letting atoms, stars and galaxies form.",
        "Distant galaxies move away from us, and faint leftover heat fills the whole sky.",
        "It is the best explanation of where the universe came from.",
    ),
    Concept(
        "a comet", "astronomy",
        "a small icy body that grows a glowing tail when it comes near the Sun",
        "Sunlight heats its ice, which turns to gas and streams away carrying dust.",
        "Halley's Comet returns to the inner solar system about every 76 years.",
        "Comets preserve material from the early solar system.",
    ),
    Concept(
        "an algorithm", "computing",
        "a precise, step-by-step procedure for solving a problem",
        "Each step is clear enough that a person or a computer can follow it without guessing.",
        "A recipe that says exactly what to mix and for how long is an everyday algorithm.",
        "Every computer program is built from algorithms.",
    ),
    Concept(
        "encryption", "computing",
        "the scrambling of information so that only someone with the right key can read it",
        "A mathematical procedure mixes the message with a secret key, and the key reverses it.",
        "The padlock icon in a web browser means the page travels encrypted.",
        "It protects passwords, payments and private messages.",
    ),
    Concept(
        "the internet", "computing",
        "a worldwide network of computer networks that exchange data using shared rules",
        "Data is cut into small packets that travel separately and are put back together at the end.",
        "Loading a web page fetches data from a server that may be on another continent.",
        "It connects billions of people and devices.",
    ),
    Concept(
        "machine learning", "computing",
        "a way of building computer systems that learn patterns from examples instead of following hand-written rules",
        "A model makes predictions, measures its errors on example data and adjusts itself to reduce them.",
        "An email filter learns to spot spam from thousands of messages people marked as spam.",
        "It powers translation, speech recognition and recommendations.",
    ),
    Concept(
        "a database", "computing",
        "an organised collection of information that a computer can search and update quickly",
        "Data is kept in structured tables or documents, with indexes that work like a book's index.",
        "A library catalogue lets you find a book by title, author or subject in seconds.",
        "Banks, shops and hospitals keep their records in databases.",
    ),
    Concept(
        "democracy", "civics",
        "a system of government in which citizens hold power, usually by voting",
        "People elect representatives, and regular elections let them replace leaders peacefully.",
        "In a national election, each adult citizen can vote for a candidate or party.",
        "It gives people a say in the laws they live under.",
    ),
    Concept(
        "the separation of powers", "civics",
        "the division of government into branches that make, carry out and judge the law",
        "Each branch can check the others, so no single group holds all the power.",
        "A court can strike down a law that the legislature passed if it breaks the constitution.",
        "It guards against abuse of power.",
    ),
    Concept(
        "a constitution", "civics",
        "the basic set of rules that says how a country is governed",
        "It sets up the institutions of government, limits their powers and lists citizens' rights.",
        "The constitution of the United States was written in 1787.",
        "Ordinary laws must follow it, which makes government predictable.",
    ),
    Concept(
        "human rights", "civics",
        "the basic freedoms and protections that belong to every person",
        "They are written into declarations, treaties and national laws that governments agree to respect.",
        "Freedom of speech lets people criticise their government without fear of prison.",
        "They set a minimum standard for how every person must be treated.",
    ),
]
AUDIENCES = {
    "": "",
    " to a ten-year-old": "Imagine it like this: ",
    " to a beginner": "In simple terms, ",
    " for a high school student": "",
    " in plain language": "Put simply, ",
    " to someone who has never studied it": "Here is the basic idea: ",
}
EXPLAIN_SYSTEM_PROMPTS = [
    "You are a patient teacher who explains ideas clearly and briefly.",
    "You are a helpful assistant. Keep explanations short and accurate.",
    "You explain science and society to curious readers without jargon.",
]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def explain_prompt_and_answer(rng: random.Random) -> tuple[str, str]:
    """A question about one concept (or two from the same field) and its answer from the fact table."""
    concept = rng.choice(CONCEPTS)
    audience = rng.choice(list(AUDIENCES))
    opener = AUDIENCES[audience]
    lead = opener + concept.name if opener else _sentence(concept.name)
    kind = rng.randrange(6)
    if kind == 0:
        prompt = f"Explain what {concept.name} is{audience}."
        answer = f"{lead} is {concept.definition}. {concept.mechanism} {concept.example}"
    elif kind == 1:
        prompt = f"What is {concept.name}? Answer in one sentence{audience}."
        answer = f"{lead} is {concept.definition}."
    elif kind == 2:
        prompt = f"How does {concept.name} work? Explain it{audience}."
        answer = f"{concept.mechanism} An example: {concept.example}"
    elif kind == 3:
        prompt = f"Why does {concept.name} matter? Explain{audience}."
        answer = f"{lead} is {concept.definition}. {concept.importance}"
    elif kind == 4:
        prompt = f"Give me an everyday example of {concept.name} and explain it{audience}."
        answer = f"{concept.example} This shows {concept.name}, which is {concept.definition}."
    else:
        other = rng.choice([c for c in CONCEPTS if c.field == concept.field and c.name != concept.name])
        prompt = f"What is the difference between {concept.name} and {other.name}? Explain{audience}."
        answer = (f"{lead} is {concept.definition}. By contrast, {other.name} is {other.definition}. "
                  f"Example of {concept.name}: {concept.example} Example of {other.name}: {other.example}")
    return prompt, answer


def make_record(rng: random.Random) -> tuple[str, dict]:
    """One OpenAI-messages record explaining a concept, sometimes with a system message."""
    prompt, answer = explain_prompt_and_answer(rng)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    if rng.random() < 0.3:
        messages.insert(0, {"role": "system", "content": rng.choice(EXPLAIN_SYSTEM_PROMPTS)})
    return prompt, {"messages": messages}
