"""A small multilingual lexicon of task words, mapped to English.

Most labelled prompts are English, so a prompt in Spanish, Russian or Chinese
shares few n-grams with them and drifts to whichever route its script was
most common in (the baselines sent most non-English prompts to ``creative``).
Adding the English word for each task word found ("напиши стихи" → "write
poem") lets the English-trained head see what is asked. Written for mixroute;
entries are common dictionary words of es, fr, de, pt, it, ru, vi, zh, ja.

Word-separated languages are matched per token (and per token pair for
two-word entries); CJK entries are matched as substrings.
"""

from __future__ import annotations

import re
from itertools import pairwise

_WORDS: dict[str, list[str]] = {
    "write": (
        "escribe escriba escribir escríbeme redacta écris écrivez écrire rédige "
        "schreibe schreib schreiben verfasse scrivi напиши написать напишите "
        "сочини составь escreva escrever escreve viết soạn"
    ).split(),
    "poem": (
        "poema poemas poesía poème poèmes poésie gedicht gedichte poesie poesia "
        "стихотворение стихи стих стихах thơ"
    ).split(),
    "story": (
        "cuento cuentos relato histoire conte nouvelle geschichte erzählung "
        "märchen racconto рассказ рассказы сказку сказка сказки историю "
        "conto história truyện"
    ).split(),
    "song lyrics": "canción chanson liedtext canzone песню песня canção".split(),
    "essay": "ensayo essai aufsatz essay saggio эссе сочинение ensaio".split(),
    "novel": "novela romanzo роман романа".split(),
    "speech": "discurso discours rede речь".split(),
    "function": "función fonction funktion funzione функцию функция função hàm".split(),
    "code": "código programa programm код кода программу программа mã".split(),
    "script": "скрипт".split(),
    "array": "arreglo matriz массив массива mảng".split(),
    "list": "lista liste список danh".split(),
    "error bug": "error erreur fehler errore ошибка ошибку ошибки erro lỗi".split(),
    "database": "datenbank база".split(),
    "query": "consulta requête abfrage запрос".split(),
    "class": "clase classe klasse класс".split(),
    "calculate": (
        "calcula calcular calcule calculez calculer berechne berechnen calcola "
        "вычисли вычислите посчитай найдите найти tính"
    ).split(),
    "solve": (
        "resuelve resolver résous résoudre résolvez löse lösen risolvi реши решите "
        "решить resolva resolver giải"
    ).split(),
    "equation": (
        "ecuación ecuaciones équation gleichung equazione уравнение уравнения equação"
    ).split(),
    "probability": (
        "probabilidad probabilité wahrscheinlichkeit probabilità вероятность "
        "вероятности probabilidade"
    ).split(),
    "sum": "suma somme summe somma сумму сумма суммы tổng".split(),
    "number": "número números nombre nombres zahl zahlen numero число числа số".split(),
    "integer": "entero entier ganze intero целых целое inteiro".split(),
    "triangle": "triángulo dreieck triangolo треугольник triângulo".split(),
    "area": "área aire fläche площадь".split(),
    "integral": "intégrale интеграл".split(),
    "derivative": "derivada dérivée ableitung derivata производная производную".split(),
    "prove": (
        "demuestra demostrar démontrez démontrer beweise beweisen dimostra "
        "докажите докажи доказать"
    ).split(),
    "percent": (
        "porcentaje pourcentage prozent percentuale процент процентов porcentagem"
    ).split(),
    "explain": (
        "explica explique expliquez expliquer erkläre erklären erklärt spiega "
        "объясни объясните объяснить"
    ).split(),
    "why": "pourquoi warum perché почему".split(),
    "what": "qué quel quelle quels cosa что какие какой".split(),
    "who": "quién wer кто".split(),
    "where": "dónde où wo где".split(),
    "when": "cuándo quand wann quando когда".split(),
    "history": "histoire geschichte storia история".split(),
    "war": "guerra guerre krieg война войны".split(),
    "law laws": "ley leyes loi lois gesetz gesetze legge закон законы luật".split(),
    "economy": "economía économie wirtschaft economia экономика экономики".split(),
    "politics": "política politique politik politica политика политики".split(),
    "philosophy": "filosofía philosophie filosofia философия".split(),
    "society": "sociedad société gesellschaft società общество".split(),
    "democracy": "democracia démocratie demokratie democrazia демократия".split(),
    "republic": "república république republik repubblica республика".split(),
    "cell": "célula cellule zelle cellula клетка клетки".split(),
    "energy": "energía énergie energie energia энергия".split(),
    "photosynthesis": (
        "fotosíntesis photosynthèse photosynthese fotosintesi фотосинтез fotossíntese"
    ).split(),
    "density": "densidad densité dichte densità плотность".split(),
    "vaccine": "vacuna vaccin impfstoff vaccino вакцина vacina".split(),
    "immune": "inmunológico immunitaire immunsystem immunitario иммунитет".split(),
    "chemistry": "química chimie chemie chimica химия".split(),
    "physics": "física physique physik fisica физика".split(),
    "biology": "biología biologie biologia биология".split(),
    "water": "agua eau wasser acqua вода".split(),
    "ice": "hielo glace eis ghiaccio лёд лед".split(),
    "summarize": (
        "resumen resumir résume résumez résumer zusammenfassung "
        "zusammenfassen riassumi riassunto перескажи резюмируй кратко "
        "resuma resumo"
    ).split(),
    "article": "artículo article artikel articolo статья статью статьи artigo".split(),
    "sentences": "frases phrases sätze sätzen frasi предложениях предложения".split(),
    "imagine": (
        "imagina imagine imaginez imagines stell immagina представь представьте"
    ).split(),
    "pretend": "finge finja pretende".split(),
    "role": "papel rôle rolle ruolo роль".split(),
    "commentator": (
        "comentarista commentateur kommentator commentatore комментатор"
    ).split(),
    "traveler": (
        "viajero voyageur reisender viaggiatore путешественник viajante"
    ).split(),
    "stress": "estrés стресс".split(),
    "tips advice": "consejos conseils tipps consigli советы dicas".split(),
    "effective ways": "eficaces efficaces effektive efficaci эффективные".split(),
    "population": "población bevölkerung popolazione население população".split(),
    "review": "reseña avis bewertung recensione отзыв отзыва avaliação".split(),
    "positive": "positivo positif positiv положительный".split(),
    "negative": "negativo négatif negativ отрицательный".split(),
    "extract": (
        "extrae extraer extrais extraire extrahiere extrahieren estrai извлеки извлечь"
    ).split(),
    "ideas": "ideas idées ideen idee идеи ideias".split(),
    "suggest": (
        "sugiere sugerir suggère suggérer suggerisci предложи предложите sugira"
    ).split(),
}

_PAIRS: dict[str, tuple[str, ...]] = {
    "write": ("hãy viết",),
    "poem": ("bài thơ",),
    "story": ("câu chuyện", "kể chuyện"),
    "song lyrics": ("bài hát",),
    "equation": ("phương trình",),
    "probability": ("xác suất",),
    "area": ("diện tích",),
    "integral": ("tích phân",),
    "derivative": ("đạo hàm",),
    "prove": ("chứng minh",),
    "explain": ("giải thích",),
    "why": ("por qué", "tại sao"),
    "summarize": ("tóm tắt", "fasse zusammen"),
    "imagine": ("tưởng tượng",),
    "pretend": ("fais comme", "actúa como", "agis comme", "đóng vai"),
    "review": ("đánh giá",),
    "extract": ("trích xuất",),
    "ideas": ("ý tưởng",),
    "database": ("base de datos", "base de données", "banco de dados"),
    "history": ("lịch sử",),
    "economy": ("kinh tế",),
}

_CJK: dict[str, tuple[str, ...]] = {
    "write": ("写", "書いて", "書け", "作成して"),
    "poem": ("诗", "詩"),
    "story": ("故事", "小说", "物語", "小説"),
    "song lyrics": ("歌词", "歌詞"),
    "essay": ("作文", "散文", "随笔"),
    "function": ("函数", "関数"),
    "code": ("代码", "程序", "编程", "コード", "プログラム"),
    "script": ("脚本", "スクリプト"),
    "array": ("数组", "配列"),
    "error bug": ("报错", "错误", "异常", "エラー", "バグ"),
    "database": ("数据库", "データベース"),
    "calculate": ("计算", "計算", "求出", "求め"),
    "solve": ("求解", "解方程", "解け"),
    "equation": ("方程",),
    "probability": ("概率", "確率"),
    "sum": ("总和", "之和", "的和"),
    "area": ("面积", "面積"),
    "integral": ("积分", "積分"),
    "derivative": ("导数", "微分"),
    "prove": ("证明", "証明"),
    "triangle": ("三角形",),
    "explain": ("解释", "説明して", "解説"),
    "why": ("为什么", "なぜ"),
    "history": ("历史", "歴史"),
    "war": ("战争", "戦争"),
    "law laws": ("法律",),
    "economy": ("经济", "経済"),
    "politics": ("政治",),
    "philosophy": ("哲学",),
    "cell": ("细胞", "細胞"),
    "energy": ("能量", "エネルギー"),
    "photosynthesis": ("光合作用",),
    "vaccine": ("疫苗", "ワクチン"),
    "chemistry": ("化学",),
    "physics": ("物理",),
    "summarize": ("总结", "概括", "摘要", "要約", "まとめ"),
    "article": ("文章", "记事", "記事"),
    "imagine": ("想象", "想像", "假设你是", "假如你是"),
    "pretend": ("扮演", "になりきって", "演じて"),
    "review": ("评论", "评价", "レビュー"),
    "extract": ("提取", "抽出"),
    "ideas": ("点子", "主意", "アイデア"),
    "suggest": ("建议", "推荐"),
}

WORD_MAP: dict[str, tuple[str, ...]] = {}
for _table in (_WORDS, _PAIRS):
    for _english, _words in _table.items():
        for _w in _words:
            WORD_MAP[_w] = tuple(_english.split())
CJK_MAP: list[tuple[str, tuple[str, ...]]] = [
    (_w, tuple(_english.split())) for _english, _ws in _CJK.items() for _w in _ws
]
_CJK_RANGE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def english_cues(words: list[str], text: str) -> list[str]:
    """English task words for the foreign ones in ``words`` / ``text`` (lower-cased)."""
    cues: list[str] = []
    for w in words:
        hit = WORD_MAP.get(w)
        if hit:
            cues += hit
    for a, b in pairwise(words):
        hit = WORD_MAP.get(a + " " + b)
        if hit:
            cues += hit
    if _CJK_RANGE.search(text):
        for w, english in CJK_MAP:
            if w in text:
                cues += english
    return cues
