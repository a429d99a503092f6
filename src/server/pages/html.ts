import escapeHtml from 'escape-html';

/**
 * Markup that is safe to send as it is. Pages are built only from `html` templates, so every interpolated value is
 * escaped (escape-html: & < > " ') unless it is itself Html; there is no way to pass a plain string through
 * unescaped except `trusted`, which takes constants written in this code base.
 */
export class Html {
  readonly value: string;
  constructor(value: string) {
    this.value = value;
  }
  toString(): string {
    return this.value;
  }
}

export type HtmlPart = Html | string | number | bigint | boolean | null | undefined | readonly HtmlPart[];

function render(v: HtmlPart): string {
  if (v === null || v === undefined || v === false || v === true) return '';
  if (v instanceof Html) return v.value;
  if (Array.isArray(v)) return (v as readonly HtmlPart[]).map(render).join('');
  return escapeHtml(String(v));
}

/** Tagged template: `html\`<p>${name}</p>\``; arrays are joined, false/null/undefined render nothing. */
export function html(strings: TemplateStringsArray, ...values: HtmlPart[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

/** A constant of this code base (never data) as markup. */
export function trusted(constant: string): Html {
  return new Html(constant);
}
