/** DOM helpers for the panels: text nodes only, so payload strings never become markup. */

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

export function button(label: string, onClick: () => void, title?: string): HTMLButtonElement {
  const node = element('button', { type: 'button', title: title ?? label }, label);
  node.addEventListener('click', onClick);
  return node;
}
