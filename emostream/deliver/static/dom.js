// What the pages' modules share for building their markup.

/** A new `tag` element, with its class and its text when given. */
export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
