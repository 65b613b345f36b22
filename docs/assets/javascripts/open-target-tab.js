// A link to a rule of a node page names the rule's row (#after-v6-nat-KUBE-SVC-...-1), which may sit in a
// content tab that is not the one shown. Material opens a tab when a link names the tab itself, not when it
// names something inside one: open every tab that holds the target, then bring the target into view.
(function () {
  function openTabsHolding(target) {
    let opened = false;
    for (let block = target.closest(".tabbed-block"); block;
         block = block.parentElement && block.parentElement.closest(".tabbed-block")) {
      const set = block.closest(".tabbed-set");
      const blocks = Array.from(block.parentElement.children);
      const input = set.querySelectorAll(":scope > input")[blocks.indexOf(block)];
      if (input && !input.checked) {
        input.checked = true;
        input.dispatchEvent(new Event("change"));
        opened = true;
      }
    }
    return opened;
  }

  function showTarget() {
    const id = decodeURIComponent(window.location.hash.slice(1));
    const target = id && document.getElementById(id);
    if (target && openTabsHolding(target)) {
      target.scrollIntoView();
    }
  }

  window.addEventListener("hashchange", showTarget);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", showTarget);
  } else {
    showTarget();
  }
})();
