/* The subcommands of the `modrwkv` program; each returns the process exit status. */
#ifndef MRW_TOOLS_TOOLS_H
#define MRW_TOOLS_TOOLS_H

int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_forecast(int argc, char **argv);
int cmd_train_forecast(int argc, char **argv);
int cmd_gen_scenes(int argc, char **argv);

#endif
