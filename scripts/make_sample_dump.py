"""Write the sample StackExchange dump bundled with stackllama (our own text, CC0 from us).

    python scripts/make_sample_dump.py   # -> stackllama_cli/demo_data/sample.stackexchange.com-Posts.xml

Each question has answers of different quality; scores follow quality so the preference
pairs carry a real signal (detailed, correct answers beat terse or wrong ones).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

OUT = Path(__file__).resolve().parents[1] / "stackllama_cli" / "demo_data" / "sample.stackexchange.com-Posts.xml"

# (title, question html, tags, [(score, accepted, answer html), ...])
QA = [
    ("How long should I let a stout condition in the bottle?",
     "<p>I bottled my first oatmeal stout last week with priming sugar. How long before it is ready to drink?</p>",
     "<beer><homebrew><stout>",
     [(14, True, "<p>Give it <strong>at least three weeks</strong> at room temperature (18-22 &deg;C). The yeast "
       "needs about two weeks to eat the priming sugar and carbonate the beer, and roasty stouts keep improving "
       "for another month or two as harsh edges mellow.</p><p>Chill one bottle after two weeks to check "
       "carbonation before you commit the rest to the fridge.</p>"),
      (3, False, "<p>Two weeks is usually enough.</p>"),
      (-2, False, "<p>Just drink it now, it's beer.</p>"),
      (6, False, "<p>Three weeks minimum. Bigger stouts (above 8% ABV) can take six weeks to carbonate because "
       "the yeast is tired from the high alcohol.</p>")]),
    ("Why does my espresso taste sour?",
     "<p>My shots pull in about 15 seconds and taste sharp and sour. I use a medium roast. What is wrong?</p>",
     "<coffee><espresso><extraction>",
     [(21, True, "<p>Sour espresso is <em>under-extracted</em>: the water passes too fast to dissolve the sweeter "
       "compounds. Your 15 second shot confirms it.</p><ul><li>Grind finer until an 18 g dose gives about 36 g in "
       "25-30 s.</li><li>Check your dose with a scale.</li><li>Make sure the machine is fully warmed up (20 "
       "minutes).</li></ul>"),
      (4, False, "<p>Try a darker roast.</p>"),
      (9, False, "<p>Grind finer. 15 seconds is far too fast for espresso, aim for 25-30 seconds.</p>"),
      (0, False, "<p>Maybe your beans are old?</p>")]),
    ("How do I find which process is using a port on Linux?",
     "<p>Starting my server fails with <code>address already in use</code> on port 8080. How can I see what "
     "holds it?</p>", "<linux><networking><command-line>",
     [(35, True, "<p>Use <code>ss</code> (or the older <code>netstat</code>):</p><pre><code>sudo ss -ltnp "
       "'sport = :8080'\n</code></pre><p>The last column shows the program and its PID. "
       "<code>sudo lsof -i :8080</code> works too. Root is needed to see processes of other users.</p>"),
      (12, False, "<pre><code>sudo lsof -i :8080\n</code></pre>"),
      (2, False, "<p>Reboot the machine and the port will be free.</p>")]),
    ("What is the difference between ale and lager yeast?",
     "<p>Both make beer, so what actually differs between the two yeasts?</p>", "<beer><yeast><brewing>",
     [(18, True, "<p>Ale yeast (<em>Saccharomyces cerevisiae</em>) ferments warm, around 15-24 &deg;C, and "
       "produces fruity esters. Lager yeast (<em>S. pastorianus</em>) ferments cold, around 7-13 &deg;C, "
       "works more slowly and gives a clean, crisp flavour after weeks of cold storage (lagering).</p>"),
      (5, False, "<p>One is top fermenting and one is bottom fermenting.</p>"),
      (-1, False, "<p>There is no real difference, it is marketing.</p>")]),
    ("How should I store coffee beans?",
     "<p>I buy 1 kg bags of whole beans. What is the best way to keep them fresh for a month?</p>",
     "<coffee><storage><beans>",
     [(16, True, "<p>Keep them <strong>airtight, dark, dry and cool</strong>: an opaque container with a one-way "
       "valve in a cupboard. Split the bag into smaller portions and open one at a time, so most beans never "
       "meet fresh air. Freezing well-sealed portions is fine for longer storage; thaw them closed so no "
       "condensation forms.</p>"),
      (2, False, "<p>Put them in the fridge.</p>"),
      (7, False, "<p>Use an airtight jar and keep it out of the sun. Don't grind until you brew.</p>")]),
    ("How can I undo the last git commit but keep my changes?",
     "<p>I committed too early. How do I undo the commit without losing the edits?</p>", "<git><version-control>",
     [(42, True, "<pre><code>git reset --soft HEAD~1\n</code></pre><p>This moves the branch back one commit and "
       "leaves your changes staged. Use <code>--mixed</code> (the default) to keep them unstaged instead. If you "
       "already pushed, prefer <code>git revert</code> so you do not rewrite shared history.</p>"),
      (8, False, "<p><code>git reset HEAD~1</code></p>"),
      (-3, False, "<pre><code>git reset --hard HEAD~1\n</code></pre>"),
      (1, False, "<p>Delete the .git folder and start again.</p>")]),
    ("What water temperature is best for pour-over coffee?",
     "<p>Should I use boiling water for my V60?</p>", "<coffee><pour-over><temperature>",
     [(11, True, "<p>Aim for <strong>92-96 &deg;C</strong>, i.e. about 30 seconds off the boil. Lighter roasts "
       "like the upper end, darker roasts the lower end, because hotter water extracts bitter compounds "
       "faster.</p>"),
      (3, False, "<p>Boiling is fine.</p>"),
      (5, False, "<p>Around 93 degrees.</p>")]),
    ("Why is my homebrew cloudy?",
     "<p>My pale ale tastes fine but looks hazy. How do I get clear beer?</p>", "<homebrew><clarity>",
     [(13, True, "<p>Haze usually comes from yeast, proteins or chill haze.</p><ol><li>Use a kettle fining such "
       "as Irish moss in the last 15 minutes of the boil.</li><li>Cool the wort quickly to drop proteins.</li>"
       "<li>Cold crash the fermenter near 2 &deg;C for two days before packaging.</li><li>Give it time: most beer "
       "clears in the bottle after a few weeks.</li></ol>"),
      (4, False, "<p>Add gelatin.</p>"),
      (0, False, "<p>Cloudy beer is healthier anyway.</p>")]),
    ("How do I run a command every five minutes?",
     "<p>I want a script to run every five minutes on my Ubuntu server.</p>", "<linux><cron><scheduling>",
     [(27, True, "<p>Add a cron entry with <code>crontab -e</code>:</p><pre><code>*/5 * * * * /home/me/bin/"
       "job.sh &gt;&gt; /home/me/job.log 2&gt;&amp;1\n</code></pre><p>Use absolute paths: cron runs with a "
       "minimal <code>PATH</code>. On systemd machines a timer unit is an alternative with better logging.</p>"),
      (6, False, "<p>Use <code>watch -n 300 ./job.sh</code> in a terminal.</p>"),
      (2, False, "<pre><code>while true; do ./job.sh; sleep 300; done\n</code></pre>")]),
    ("Is it safe to drink beer past its best-before date?",
     "<p>I found a few bottles that expired six months ago.</p>", "<beer><storage><safety>",
     [(9, True, "<p>Yes. Beer's low pH, alcohol and hops keep pathogens out, so old beer is safe; it may just "
       "taste stale (papery, from oxidation) or lose hop aroma. Strong, dark beers often improve with age.</p>"),
      (2, False, "<p>Throw it away to be safe.</p>"),
      (4, False, "<p>It is safe but might taste flat.</p>")]),
    ("What grind size should I use for a French press?",
     "<p>My French press coffee is muddy and bitter.</p>", "<coffee><french-press><grinding>",
     [(15, True, "<p>Use a <strong>coarse, even grind</strong>, like sea salt, and steep four minutes. Fine "
       "particles slip through the mesh (the mud) and over-extract (the bitterness). A burr grinder gives a much "
       "more even grind than a blade grinder.</p>"),
      (3, False, "<p>Coarse.</p>"),
      (1, False, "<p>Use a paper filter afterwards.</p>")]),
    ("How do I make a Python virtual environment?",
     "<p>What is the standard way to create an isolated environment for a project?</p>", "<python><venv>",
     [(30, True, "<pre><code>python3 -m venv .venv\nsource .venv/bin/activate\npip install -r requirements.txt\n"
       "</code></pre><p><code>venv</code> ships with Python 3. Add <code>.venv/</code> to "
       "<code>.gitignore</code> and run <code>deactivate</code> to leave it.</p>"),
      (5, False, "<p>Install virtualenv with pip and run <code>virtualenv env</code>.</p>"),
      (-2, False, "<p>Just use sudo pip install for everything.</p>")]),
    ("Why do some beers need to be served in a specific glass?",
     "<p>Is glassware just marketing?</p>", "<beer><glassware><serving>",
     [(8, True, "<p>Shape changes what you smell. A tulip or snifter concentrates aroma for hoppy or strong "
       "beers, a tall pilsner glass shows off carbonation, and a wide mouth releases aroma quickly. The effect "
       "is real but modest; a clean glass matters more than its shape.</p>"),
      (3, False, "<p>It is mostly marketing.</p>"),
      (1, False, "<p>Breweries want to sell glasses.</p>")]),
    ("How much coffee should I use per cup?",
     "<p>What ratio of coffee to water should I start with?</p>", "<coffee><brewing><ratio>",
     [(12, True, "<p>Start at <strong>1:16</strong> by weight, e.g. 15 g coffee for 240 g water, then adjust to "
       "taste between 1:15 (stronger) and 1:17. Weighing beats scoops because beans vary in density.</p>"),
      (4, False, "<p>Two tablespoons per cup.</p>"),
      (0, False, "<p>As much as you like.</p>")]),
    ("How do I search for text in files recursively?",
     "<p>I need to find every file under a folder that contains a word.</p>", "<linux><grep><search>",
     [(25, True, "<pre><code>grep -rn 'word' path/to/dir\n</code></pre><p><code>-r</code> recurses, "
       "<code>-n</code> prints line numbers, <code>-i</code> ignores case and <code>-l</code> lists only file "
       "names. <code>ripgrep</code> (<code>rg word</code>) is faster and skips ignored files.</p>"),
      (7, False, "<pre><code>find . -type f | xargs grep word\n</code></pre>"),
      (1, False, "<p>Open each file in an editor.</p>")]),
    ("What does dry hopping do?",
     "<p>Recipes say to dry hop for five days. Why add hops after fermentation?</p>", "<homebrew><hops>",
     [(17, True, "<p>Dry hopping adds <em>aroma</em> without bitterness. Bitterness comes from alpha acids "
       "isomerised by boiling; added cold, hops give their volatile oils (citrus, pine, tropical notes) which "
       "boiling would drive off. Three to five days is enough; longer can bring grassy flavours.</p>"),
      (5, False, "<p>It makes the beer more bitter.</p>"),
      (2, False, "<p>For aroma.</p>")]),
    ("How do I descale an espresso machine?",
     "<p>My machine heats slowly and the water tastes chalky.</p>", "<coffee><espresso><maintenance>",
     [(14, True, "<p>Run a descaling solution (citric acid, about 20 g per litre, or the maker's product) "
       "through the boiler and group, let it sit 20 minutes, then flush with at least two full tanks of fresh "
       "water. Check the manual: some boilers must not see vinegar or strong acids. Filtered water slows "
       "new scale.</p>"),
      (3, False, "<p>Use vinegar.</p>"),
      (6, False, "<p>Citric acid in water, run it through, rinse well.</p>")]),
    ("How can I see disk usage per folder?",
     "<p>My disk is full. How do I find what takes the space?</p>", "<linux><disk-usage>",
     [(22, True, "<pre><code>du -h --max-depth=1 /path | sort -h\n</code></pre><p>Repeat inside the biggest "
       "folder. <code>ncdu</code> gives an interactive view, and <code>df -h</code> shows free space per file "
       "system.</p>"),
      (5, False, "<p><code>df -h</code></p>"),
      (0, False, "<p>Delete /tmp.</p>")]),
    ("Why does my beer taste like green apples?",
     "<p>My lager has a strong green apple flavour.</p>", "<homebrew><off-flavors>",
     [(11, True, "<p>That is <strong>acetaldehyde</strong>, an intermediate the yeast makes and later "
       "reabsorbs. It shows when beer is packaged too early or the yeast was stressed. Let the beer sit on the "
       "yeast a few more days at fermentation temperature, and pitch enough healthy yeast next time.</p>"),
      (2, False, "<p>Infection, dump it.</p>"),
      (4, False, "<p>It is too young, wait.</p>")]),
    ("Does the type of water matter for coffee?",
     "<p>Is tap water good enough?</p>", "<coffee><water>",
     [(10, True, "<p>Yes: coffee is ~98% water. Very hard water tastes flat and scales machines; distilled "
       "water extracts poorly and tastes empty. Filtered tap water with moderate mineral content (around 75-150 "
       "ppm) is a good target.</p>"),
      (2, False, "<p>Use bottled water.</p>"),
      (-1, False, "<p>Water does not matter.</p>")]),
    ("How do I kill a process that will not stop?",
     "<p>A program ignores Ctrl-C. How can I end it?</p>", "<linux><processes>",
     [(19, True, "<p>Find the PID with <code>pgrep -a name</code>, then ask it to stop with "
       "<code>kill PID</code> (SIGTERM). If it still runs after a few seconds, <code>kill -9 PID</code> "
       "(SIGKILL) ends it without cleanup. A process in state <code>D</code> is waiting on I/O and cannot be "
       "killed until the I/O returns.</p>"),
      (6, False, "<pre><code>killall -9 name\n</code></pre>"),
      (1, False, "<p>Turn the computer off and on.</p>")]),
    ("What is a good first beer recipe for a beginner?",
     "<p>I just bought a starter kit. What should I brew first?</p>", "<homebrew><recipes><beginner>",
     [(12, True, "<p>Brew a <strong>pale ale or brown ale from extract</strong>: ales ferment at room "
       "temperature and forgive small mistakes. Focus on sanitation and on keeping fermentation around 18-20 "
       "&deg;C; those two matter more than the recipe.</p>"),
      (3, False, "<p>A lager, they are the most popular.</p>"),
      (5, False, "<p>Whatever kit came with your equipment.</p>")]),
    ("Why does cold brew taste less acidic?",
     "<p>Cold brew seems smoother than hot coffee. Why?</p>", "<coffee><cold-brew><acidity>",
     [(9, True, "<p>Cold water extracts compounds at different rates: many aromatic acids and bitter compounds "
       "dissolve far less at low temperature, so cold brew tastes smoother and sweeter even though its pH is "
       "similar to hot coffee.</p>"),
      (2, False, "<p>Because it is cold.</p>"),
      (4, False, "<p>Less acid gets extracted without heat.</p>")]),
    ("How do I make a shell script executable?",
     "<p>Running <code>./script.sh</code> says permission denied.</p>", "<linux><bash><permissions>",
     [(24, True, "<pre><code>chmod +x script.sh\n./script.sh\n</code></pre><p>Also start the file with a "
       "shebang such as <code>#!/usr/bin/env bash</code> so the right interpreter runs it. A file system "
       "mounted <code>noexec</code> refuses to run it anyway; then use <code>bash script.sh</code>.</p>"),
      (8, False, "<p><code>chmod 777 script.sh</code></p>"),
      (2, False, "<p>Run it with sudo.</p>")]),
    ("What makes a beer sour?",
     "<p>How do brewers make sour beers like Berliner Weisse?</p>", "<beer><sour><bacteria>",
     [(10, True, "<p>Bacteria, mainly <em>Lactobacillus</em> and <em>Pediococcus</em>, turn sugars into lactic "
       "acid; wild yeasts like <em>Brettanomyces</em> add funk. Kettle souring lets Lactobacillus work on wort "
       "for a day or two before boiling, which is fast and keeps the bacteria out of the brewery.</p>"),
      (3, False, "<p>They add vinegar.</p>"),
      (4, False, "<p>Lactic acid bacteria.</p>")]),
    ("Should I rinse a paper filter before brewing?",
     "<p>Some guides say to rinse the filter first. Does it matter?</p>", "<coffee><pour-over><filters>",
     [(8, True, "<p>Yes, especially with white paper: rinsing removes papery taste and preheats the brewer and "
       "cup. Pour the rinse water away before adding coffee.</p>"),
      (1, False, "<p>No, it makes no difference.</p>"),
      (3, False, "<p>Only for brown filters.</p>")]),
    ("How do I copy files to a remote server?",
     "<p>What is the easiest way to copy a folder to a server over SSH?</p>", "<linux><ssh><file-transfer>",
     [(20, True, "<pre><code>rsync -avz folder/ user@host:/path/folder/\n</code></pre><p><code>rsync</code> "
       "copies only what changed and can resume; <code>scp -r folder user@host:/path/</code> is the simple "
       "alternative. Mind the trailing slash: with it rsync copies the folder's contents.</p>"),
      (7, False, "<pre><code>scp -r folder user@host:/path\n</code></pre>"),
      (0, False, "<p>Email the files to yourself.</p>")]),
    ("How long do hops stay fresh?",
     "<p>I have hop pellets from last year. Can I still use them?</p>", "<homebrew><hops><storage>",
     [(7, True, "<p>Vacuum-sealed pellets kept in the freezer stay good for one to two years. Alpha acids and "
       "aroma oils fade with warmth and oxygen, so old hops give less bitterness; smell them: cheesy means "
       "oxidised.</p>"),
      (2, False, "<p>About six months.</p>"),
      (1, False, "<p>Forever if dry.</p>")]),
]


def main() -> None:
    rows = []
    next_id = 1
    dates = iter(f"2024-{m:02d}-{d:02d}T{h:02d}:15:00.000" for m in range(1, 13) for d in (3, 11, 19, 27)
                 for h in (9,))
    for title, body, tags, answers in QA:
        qid = next_id
        next_id += 1
        answer_ids = list(range(next_id, next_id + len(answers)))
        next_id += len(answers)
        accepted = [aid for aid, (_, acc, _) in zip(answer_ids, answers) if acc]
        date = next(dates)
        attrs = {"Id": qid, "PostTypeId": 1, "CreationDate": date, "Score": max(s for s, _, _ in answers) // 2,
                 "Body": body, "Title": title, "Tags": tags, "AnswerCount": len(answers)}
        if accepted:
            attrs["AcceptedAnswerId"] = accepted[0]
        rows.append(attrs)
        for aid, (score, _, html) in zip(answer_ids, answers):
            rows.append({"Id": aid, "PostTypeId": 2, "ParentId": qid, "CreationDate": date, "Score": score,
                         "Body": html})
    # What real dumps contain too: a tag wiki excerpt (PostTypeId 4) and an unanswered question.
    rows.append({"Id": next_id, "PostTypeId": 4, "CreationDate": "2024-01-01T00:00:00.000", "Score": 0,
                 "Body": "<p>Questions about brewing beer at home.</p>"})
    rows.append({"Id": next_id + 1, "PostTypeId": 1, "CreationDate": "2024-12-30T10:00:00.000", "Score": 1,
                 "Body": "<p>Can I brew with honey instead of sugar?</p>", "Title": "Brewing with honey?",
                 "Tags": "<homebrew>", "AnswerCount": 0})
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<posts>"]
    for row in rows:
        lines.append("  <row " + " ".join(f"{k}={quoteattr(str(v))}" for k, v in row.items()) + " />")
    lines.append("</posts>")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(rows)} rows, {len(QA)} questions)")


if __name__ == "__main__":
    main()
