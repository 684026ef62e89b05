import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { DetectTextFieldRequest } from '../../common/protocol';
import type { FieldSpec } from '../../server/src/profile/types';

const rememberedKey = (dataset: vscode.Uri) => `moeStudio.field:${dataset.toString()}`;

/**
 * Which part of each row is the text: detected by the server, asked with a quick pick when the
 * detection is unsure, and remembered per dataset.
 */
export async function chooseTextField(context: vscode.ExtensionContext, client: LanguageClient, dataset: vscode.Uri): Promise<FieldSpec | undefined> {
  const remembered = context.workspaceState.get<FieldSpec>(rememberedKey(dataset));
  if (remembered) return remembered;
  const { candidates, confident } = await client.sendRequest(DetectTextFieldRequest.type, { uri: dataset.toString() });
  if (candidates.length === 0) throw new Error(`No text field found in ${vscode.workspace.asRelativePath(dataset)}: rows need a string field such as "text", "content", "prompt"/"completion", "question"/"answer" or chat "messages".`);
  let spec = candidates[0].spec;
  if (!confident) {
    const picked = await vscode.window.showQuickPick(
      candidates.map((candidate) => ({ label: candidate.label, description: `${Math.round(candidate.confidence * 100)}% of sampled rows`, spec: candidate.spec })),
      { title: 'MoE Studio: which field holds the text?', placeHolder: vscode.workspace.asRelativePath(dataset) },
    );
    if (!picked) return undefined;
    spec = picked.spec;
  }
  await context.workspaceState.update(rememberedKey(dataset), spec);
  return spec;
}
