"""The README's results tables, generated from the metric files the notebooks record.

Each notebook records its headline numbers as it runs (``nh.record``, see ``metrics.py``) into
``artifacts/metrics/<stem>.json``. A run worth publishing is copied into the repository:

    python -m nndl_helpers.results collect quick        # artifacts/metrics -> results/quick/
    python -m nndl_helpers.results collect gpu --from DIR --course DIR/course.json
    python -m nndl_helpers.results readme               # rewrite the README's generated tables
    python -m nndl_helpers.results readme --check       # exit 1 if the README is out of date

``results/quick/`` holds the quick profile on the course's 2-core CPU; ``results/gpu/`` the full
profile on a GPU, with ``course.json`` naming the machine (GPU, driver, CUDA, PyTorch) and each
notebook's wall time (``benchmarks/gpu_course.py`` writes it). The README's tables sit between
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers; a test fails when they differ
from what the committed files generate, and when a recorded metric has no label here.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from .metrics import load, metrics_dir

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
README = ROOT / "README.md"

# What each recorded number is, for a reader of the README. One line each; the unit is in the label.
LABELS: dict[str, str] = {
    'bn_test_acc': 'BatchNorm MLP at lr 0.3, test acc.',
    'no_bn_test_acc': 'same MLP without BatchNorm, test acc.',
    'torch_twin_lstm_val_ppl': 'PyTorch LSTM matched to the NumPy one, val. perplexity',
    'twin_vs_numpy_ppl_rel_diff': 'matched LSTMs, relative perplexity difference',
    'lenet_twin_same_predictions': 'test digits where the twins predict alike (fraction)',
    'overfit_early_stop_test_acc_none': 'test acc. at the best validation epoch, no regularizer',
    'overfit_early_stop_test_acc_l2': 'test acc. at the best validation epoch, ℓ2',
    'overfit_early_stop_test_acc_l1': 'test acc. at the best validation epoch, ℓ1',
    'overfit_early_stop_test_acc_weight_decay': 'test acc. at the best validation epoch, weight decay',
    'overfit_early_stop_test_acc_dropout': 'test acc. at the best validation epoch, dropout',
    'overfit_early_stop_test_acc_augmentation': 'test acc. at the best validation epoch, augmentation',
    'least_squares_param_error': 'least squares, largest error of the fitted weights',
    'gd_closed_form_gap': 'gradient descent vs closed form, largest weight gap',
    'poly9_test_mse': 'degree-9 polynomial, test MSE',
    'ridge_poly9_best_test_mse': 'degree-9 polynomial with the best ridge penalty, test MSE',
    'bias_variance_decomposition_gap': 'bias² + variance + noise vs measured error, gap',
    'diabetes_test_mse_closed_form': 'diabetes, test MSE, closed form',
    'diabetes_test_mse_numpy_sgd': 'diabetes, test MSE, NumPy mini-batch SGD',
    'diabetes_test_mse_torch_sgd': 'diabetes, test MSE, PyTorch SGD',
    'diabetes_torch_numpy_param_gap': 'diabetes, PyTorch vs NumPy weights, largest gap',
    'diabetes_numpy_sgd_seconds': 'diabetes, NumPy SGD s',
    'diabetes_torch_sgd_seconds': 'diabetes, PyTorch SGD s',
    'grad_check_max_rel_error': 'gradient check, largest relative error',
    'softmax_fashion_acc': 'softmax regression, Fashion-MNIST test acc. (NumPy)',
    'torch_softmax_fashion_acc': 'softmax regression, Fashion-MNIST test acc. (PyTorch)',
    'numpy_softmax_epoch_seconds': 'NumPy s/epoch',
    'torch_softmax_epoch_seconds': 'PyTorch s/epoch',
    'softmax_torch_numpy_weight_gap': 'PyTorch vs NumPy weights, largest gap',
    'softmax_mnist_acc': 'softmax regression, MNIST test acc. (NumPy)',
    'torch_softmax_mnist_acc': 'MNIST test acc. (PyTorch)',
    'numpy_mlp_mnist_acc': 'MLP, MNIST test acc. (NumPy)',
    'torch_mlp_mnist_acc': 'MLP, MNIST test acc. (PyTorch)',
    'numpy_mlp_epoch_seconds': 'NumPy s/epoch',
    'torch_mlp_epoch_seconds': 'PyTorch s/epoch',
    'mlp_test_prediction_disagreement': 'test digits where NumPy and PyTorch disagree (fraction)',
    'playground_min_acc': 'playground toys, lowest accuracy',
    'numeric_check_max_rel_error': 'centred differences vs backward, largest relative error',
    'centred_diff_best_error': 'centred difference, best error over h (float64)',
    'centred_diff_float32_best_error': 'centred difference, best error over h (float32)',
    'autodiff_max_rel_error': 'Value/Tensor engine vs torch.autograd, largest relative error',
    'engine_loss_curve_gap': 'engine MLP vs hand-written MLP, loss-curve gap',
    'spiral_train_acc': 'engine MLP, spiral training acc.',
    'numpy_lenet_mnist_acc': 'LeNet-5, MNIST test acc. (NumPy)',
    'numpy_lenet_train_seconds': 'NumPy LeNet-5 training s',
    'torch_lenet_mnist_acc': 'LeNet-5, MNIST test acc. (PyTorch)',
    'lenet_twin_loss_gap': 'PyTorch twin vs NumPy, largest loss gap',
    'numpy_torch_time_ratio': 'NumPy / PyTorch time per step',
    'grad_ratio_plain_default_init': 'plain 10-block stack, gradient ratio (default init)',
    'grad_ratio_plain_he_init': 'plain stack, gradient ratio (He init)',
    'grad_ratio_residual_min': 'residual stack, smallest gradient ratio',
    'lenet_fashion_acc': 'LeNet, Fashion-MNIST test acc.',
    'vgg_fashion_acc': 'VGG-style, Fashion-MNIST test acc.',
    'resnet_fashion_acc': 'ResNet, Fashion-MNIST test acc.',
    'torch_cnn_fashion_acc': 'best CNN, Fashion-MNIST test acc.',
    'fashion_train_seconds': 'Fashion-MNIST training s (three models)',
    'unigram_val_ppl': 'Time Machine val. perplexity, unigram',
    'numpy_lstm_val_ppl': 'NumPy LSTM val. perplexity',
    'lstm_val_ppl': 'PyTorch LSTM val. perplexity',
    'gru_val_ppl': 'PyTorch GRU val. perplexity',
    'tang_train_loss': 'Tang-poem LSTM training loss',
    'tang_regular_lines': 'Tang poems, regular lines (fraction)',
    'shakespeare_val_ppl': 'Tiny Shakespeare LSTM val. perplexity',
    'optimizer_vs_torch_max_rel_error': 'optimizers vs torch.optim, largest relative error',
    'rosenbrock_final_f_sgd': 'Rosenbrock, final f, SGD',
    'rosenbrock_final_f_momentum': 'Rosenbrock, final f, momentum',
    'rosenbrock_final_f_nesterov': 'Rosenbrock, final f, Nesterov',
    'saddle_final_f_adam': 'saddle, final f, Adam',
    'saddle_final_f_rmsprop': 'saddle, final f, RMSprop',
    'ill_conditioned_final_f_adagrad': 'ill-conditioned bowl, final f, AdaGrad',
    'overfit_test_acc_none': '1,000-image MLP, test acc., no regularizer',
    'overfit_gap_none': 'train-test gap, no regularizer',
    'overfit_test_acc_l2': 'test acc., ℓ2',
    'overfit_test_acc_l1': 'test acc., ℓ1',
    'overfit_test_acc_weight_decay': 'test acc., weight decay (AdamW)',
    'overfit_test_acc_dropout': 'test acc., dropout',
    'overfit_test_acc_augmentation': 'test acc., data augmentation',
    'overfit_gap_augmentation': 'train-test gap, augmentation',
    'torch_dropout_test_acc': 'test acc., PyTorch dropout twin',
    'search_grid_best_val_acc': 'grid search, best val. acc.',
    'search_random_best_val_acc': 'random search, best val. acc.',
    'unscaled_max_weight_d1024': 'unscaled scores at D=1024, largest attention weight',
    'unscaled_jacobian_ratio_d1024_d4': 'unscaled scores, softmax Jacobian D=1024 / D=4',
    'scaled_score_std_d1024': 'scaled scores at D=1024, std',
    'mha_numpy_over_torch_no_mask': 'multi-head attention, NumPy / PyTorch time',
    'mha_numpy_over_torch_causal': 'causal multi-head attention, NumPy / PyTorch time',
    'max_grad_error_autograd': 'attention backward vs autograd, largest relative error',
    'max_grad_error_centred': 'attention backward vs centred differences, largest relative error',
    'toy_accuracy': 'NumPy Transformer, reversal acc.',
    'toy_torch_accuracy': 'PyTorch twin, reversal acc.',
    'sort_sequence_accuracy': 'NumPy encoder-decoder, sorted sequences exact',
    'alignment_accuracy': 'cross-attention alignment acc.',
    'gpt_val_loss': 'tiny GPT, Tiny Shakespeare val. loss',
    'gpt_train_seconds': 'tiny GPT training s',
    'tang_val_loss': 'Tang-poem GPT val. loss',
    'gpt_tang_regular_lines': 'Tang-poem GPT, regular lines in 8 continued poems (fraction)',
    'checkpoint_gpt_tang_regular_lines': 'course checkpoint Tang-poem GPT (6,000 steps, CPU), regular lines (fraction)',
    'pca_test_mse': 'PCA (16 components), test MSE',
    'pca_2d_test_mse': 'PCA (2 components), test MSE',
    'kmeans_purity': 'k-means purity',
    'ae_test_mse': 'autoencoder (code 16), test MSE',
    'ae_2d_test_mse': 'autoencoder (code 2), test MSE',
    'knn_2d_acc_pca': 'kNN on 2-D PCA codes, acc.',
    'knn_2d_acc_autoencoder': 'kNN on 2-D autoencoder codes, acc.',
    'dae_test_mse_noise_0_5': 'denoising autoencoder, MSE on masked inputs',
    'ae_test_mse_noise_0_5': 'plain autoencoder, MSE on masked inputs',
    'conv_ae_test_mse': 'conv autoencoder, test MSE',
    'conv_ae_train_seconds': 'conv autoencoder training s',
    'numpy_vae_digits_nelbo': 'NumPy VAE, 8x8 digits −ELBO',
    'vae_test_nelbo': 'VAE, MNIST test −ELBO',
    'vae_test_kl': 'VAE, test KL term',
    'vae_importance_nll_500': 'VAE, importance-sampled −log p(x) (500 samples)',
    'vae_train_seconds': 'VAE training s',
    'vae_2d_test_nelbo': '2-D VAE, MNIST test −ELBO',
    'vae_active_units': 'active latent units',
    'numpy_gan_modes': 'NumPy GAN, ring modes covered (of 8)',
    'numpy_gan_high_quality': 'NumPy GAN, samples near a mode (fraction)',
    'judge_accuracy': 'LeNet-5 judge, test acc.',
    'dcgan_confident': 'DCGAN digits judged with p > 0.9 (fraction)',
    'dcgan_classes': 'DCGAN classes among them',
    'checkpoint_dcgan_confident': 'course checkpoint DCGAN (8,000 steps, CPU), digits with p > 0.9',
    'checkpoint_dcgan_classes': 'course checkpoint DCGAN, classes among them',
    'dcgan_entropy': 'DCGAN class entropy (nats)',
    'dcgan_train_seconds': 'DCGAN training s',
    'real_digits_confident': 'real digits judged with p > 0.9',
    'roll_energy_distance': 'swiss-roll DDPM, energy distance',
    'roll_gaussian_energy_distance': 'matched Gaussian, energy distance',
    'unet_train_seconds': 'U-Net training s',
    'ddpm_confident': 'U-Net DDPM digits judged with p > 0.9 (fraction)',
    'ddpm_classes': 'DDPM classes among them',
    'checkpoint_ddpm_confident': 'course checkpoint U-Net DDPM (16,000 steps, CPU), digits with p > 0.9',
    'checkpoint_ddpm_classes': 'course checkpoint DDPM, classes among them',
    'ddim_confident': 'DDIM digits with p > 0.9',
    'ddim_classes': 'DDIM classes',
    'ddpm_sampling_seconds': 'DDPM sampling s',
    'latent_confident': 'latent diffusion digits with p > 0.9',
    'latent_classes': 'latent diffusion classes',
    'latent_energy_distance': 'latent diffusion, energy distance to the codes',
    'vae_prior_confident': 'VAE prior samples with p > 0.9',
    'lm_perplexity': 'Chinese character GRU LM, held-out perplexity',
    'bleu_greedy': 'GRU + attention en→zh, held-out BLEU (all test sentences), greedy',
    'bleu_beam': 'same sentences, beam 4 (λ chosen on a validation split)',
    'transformer_bleu': 'Transformer en→zh BLEU, greedy',
    'fra_bleu': 'GRU + attention en→fr BLEU',
    'frames_per_second': 'frames/s',
    'render_ms': 'drawing ms/frame',
    'circles_test_acc': "circles, test acc. after the check's training",
    'batch32_fixed_lr_train_loss': 'batch 32, fixed LR, train loss',
    'batch32_fixed_lr_test_acc': 'batch 32, fixed LR, test acc.',
    'batch32_linear_scaling_train_loss': 'batch 32, linear scaling, train loss',
    'batch32_linear_scaling_test_acc': 'batch 32, linear scaling, test acc.',
    'batch32_scaling_warmup_train_loss': 'batch 32, scaling + warm-up, train loss',
    'batch32_scaling_warmup_test_acc': 'batch 32, scaling + warm-up, test acc.',
    'batch128_fixed_lr_train_loss': 'batch 128, fixed LR, train loss',
    'batch128_fixed_lr_test_acc': 'batch 128, fixed LR, test acc.',
    'batch128_linear_scaling_train_loss': 'batch 128, linear scaling, train loss',
    'batch128_linear_scaling_test_acc': 'batch 128, linear scaling, test acc.',
    'batch128_scaling_warmup_train_loss': 'batch 128, scaling + warm-up, train loss',
    'batch128_scaling_warmup_test_acc': 'batch 128, scaling + warm-up, test acc.',
    'batch512_fixed_lr_train_loss': 'batch 512, fixed LR, train loss',
    'batch512_fixed_lr_test_acc': 'batch 512, fixed LR, test acc.',
    'batch512_linear_scaling_train_loss': 'batch 512, linear scaling, train loss',
    'batch512_linear_scaling_test_acc': 'batch 512, linear scaling, test acc.',
    'batch512_scaling_warmup_train_loss': 'batch 512, scaling + warm-up, train loss',
    'batch512_scaling_warmup_test_acc': 'batch 512, scaling + warm-up, test acc.',
    'toy_raw_features_max_acc': 'logistic neuron on raw x₁, x₂ (circles, XOR), best test acc.',
    'toy_hand_features_circles_acc': 'logistic neuron on x₁², x₂², circles test acc.',
    'toy_hand_features_xor_acc': 'logistic neuron on x₁², x₂², XOR test acc.',
    'toy_learned_features_min_acc': 'neuron on 8 learned tanh features (circles, XOR), lowest test acc.',
    'mnist_linear_raw_acc': 'softmax regression on raw pixels, 2,000 labels, MNIST test acc.',
    'mnist_linear_pca30_acc': 'softmax regression on 30 PCA components, MNIST test acc.',
    'mnist_mlp_end_to_end_acc': 'MLP 784-64-10 trained end to end, MNIST test acc.',
    'mnist_linear_on_learned_acc': "softmax regression on the MLP's 64 hidden units, MNIST test acc.",
    'credit_w1_nonzero_fraction': 'first-layer weights with a non-zero gradient for one digit (fraction)',
    'neuron_trained_acc': 'one trained neuron, Gaussians test acc.',
    'hopfield_digits_recalled_hebbian': 'Hopfield, 6 digits recalled (Hebbian rule), fraction',
    'hopfield_digits_recalled_covariance': 'Hopfield, 6 digits recalled (covariance rule), fraction',
    'hopfield_capacity_knee_alpha': 'Hopfield capacity knee P/N (theory 0.138)',
    'modern_hopfield_vs_attention_max_diff': 'modern Hopfield update vs attention, largest difference',
    'modern_hopfield_random_recall_20n': 'modern Hopfield, random patterns recalled at P = 20 N',
    'modern_hopfield_digits_recalled': 'modern Hopfield, 1000 digits recalled (20% flipped)',
    'memn2n_1hop_single_fact_acc': 'MemN2N 1 hop, single-fact accuracy',
    'memn2n_1hop_two_fact_acc': 'MemN2N 1 hop, two-fact accuracy',
    'memn2n_2hop_single_fact_acc': 'MemN2N 2 hops, single-fact accuracy',
    'memn2n_2hop_two_fact_acc': 'MemN2N 2 hops, two-fact accuracy',
    'memn2n_3hop_single_fact_acc': 'MemN2N 3 hops, single-fact accuracy',
    'memn2n_3hop_two_fact_acc': 'MemN2N 3 hops, two-fact accuracy',
    'memn2n_torch_3hop_two_fact_acc': 'PyTorch MemN2N 3 hops, two-fact accuracy',
    'memn2n_numpy_3hop_train_seconds': 'NumPy MemN2N 3 hops, training s',
    'bagging_variance_ratio': 'bagged 1-NN (25 bags), variance / single fit',
    'adaboost_stumps_test_error': 'AdaBoost (SAMME), 100 own stumps, test error',
    'adaboost_sklearn_test_error': 'scikit-learn AdaBoost, 100 stumps, test error',
    'adaboost_seconds': 'AdaBoost, 100 rounds s',
    'bagged_mlp_test_error': 'bagged MLPs (8), test error',
    'single_mlp_test_error': 'single MLP (bootstrap), test error',
    'semi_baseline_acc': '100 labels only, test acc.',
    'self_training_acc': 'self-training (τ = 0.9), test acc.',
    'transfer_source_acc': 'LeNet-5 on digits 0-4, test acc.',
    'transfer_finetune_acc_20_labels': 'fine-tuned, 20 labels of 5-9, acc.',
    'transfer_frozen_acc_20_labels': 'frozen features + linear head, 20 labels, acc.',
    'transfer_scratch_acc_20_labels': 'from scratch, 20 labels, acc.',
    'domain_shift_acc': 'shifted domain, unadapted acc.',
    'domain_adapted_acc': 'shifted domain, moment-matched acc.',
    'lifelong_task_a_acc_before': 'permuted MNIST, task A acc. before B',
    'lifelong_task_a_acc_plain': 'task A acc. after B, plain',
    'lifelong_task_a_acc_ewc': 'task A acc. after B, EWC',
    'lifelong_task_b_acc_ewc': 'task B acc., EWC',
    'alarm_posterior_burglary': 'alarm network, p(burglary | both neighbours call)',
    'exact_inference_max_error': 'VE and belief propagation, max. error vs enumeration',
    'mean_field_kl_gap': 'mean-field VI on a tree network, log Z minus ELBO (nats)',
    'sampler_max_error': 'five samplers, max. error vs exact marginals',
    'rejection_error_slope': 'rejection sampling, log-log slope of error vs n',
    'likelihood_weighting_error_slope': 'likelihood weighting, log-log slope of error vs n',
    'hmm_brute_force_max_error': 'HMM forward-backward, max. error vs enumeration',
    'casino_viterbi_accuracy': 'dishonest casino, Viterbi accuracy (10,000 rolls)',
    'casino_learned_p_six_loaded': 'Baum-Welch, learned p(six) of the loaded die (true 0.5)',
    'jieba_hmm_agreement': "own Viterbi with jieba's HMM tables, runs segmented as jieba (fraction)",
    'seg_f1_hmm_jieba_tables': "word segmentation F1, HMM with jieba's tables",
    'seg_f1_hmm_counted': 'word segmentation F1, HMM counted on the training runs',
    'seg_f1_crf_numpy': 'word segmentation F1, NumPy linear-chain CRF',
    'seg_f1_bilstm_crf': 'word segmentation F1, BiLSTM-CRF',
    'bilstm_crf_train_seconds': 'BiLSTM-CRF training s',
    'gmm_final_log_likelihood': 'Gaussian mixture EM, final log-likelihood (nats, 600 points)',
    'bm_gibbs_tv': 'Boltzmann machine, 100 Gibbs chains x 200 sweeps, TV to the exact distribution',
    'bm_annealing_ground_state_fraction': 'simulated annealing, 16-unit spin glass, chains reaching the ground state',
    'bas_exact_gradient_loglik': '12x8 RBM, bars and stripes, exact-gradient log-lik. (nats)',
    'bas_cd1_loglik': '12x8 RBM, CD-1 log-lik. (nats)',
    'bas_pcd1_loglik': '12x8 RBM, PCD-1 log-lik. (nats)',
    'bas_cd1_relative_bias': 'CD-1 expected update, relative bias (exact)',
    'bas_cd10_relative_bias': 'CD-10 expected update, relative bias (exact)',
    'bas_pcd1_relative_bias': 'PCD-1 (mixed chains) expected update, relative bias (exact)',
    'ais_small_rbm_error': 'AIS log Z error on the enumerable RBMs (nats)',
    'rbm_train_seconds': 'NumPy MNIST RBM (PCD-1) training s',
    'rbm_mnist_test_loglik_ais': 'MNIST RBM, AIS test log-lik. (nats)',
    'rbm_pseudo_loglik': 'MNIST RBM, test pseudo-log-lik.',
    'sklearn_rbm_pseudo_loglik': 'scikit-learn BernoulliRBM, test pseudo-log-lik.',
    'rbm_features_logreg_1000_acc': 'logistic regression on RBM features, 1,000 labels, acc.',
    'pixels_logreg_1000_acc': 'logistic regression on pixels, 1,000 labels, acc.',
    'dbn_pretrain_seconds': 'DBN greedy pre-training s',
    'dbn_acc_100_labels': 'DBN fine-tuned, 100 labels, acc.',
    'random_init_acc_100_labels': 'random-start MLP, 100 labels, acc.',
    'dbn_acc_1000_labels': 'DBN fine-tuned, 1,000 labels, acc.',
    'dbn_acc_all_labels': 'DBN fine-tuned, all training labels, acc.',
    'random_init_acc_all_labels': 'random-start MLP, all training labels, acc.',
    'torch_rbm_train_seconds': 'PyTorch RBM training s',
    'torch_rbm_test_loglik_ais': 'PyTorch RBM, AIS test log-lik. (nats)',
    'torch_dbn_acc': 'PyTorch DBN (nn.Module) fine-tuned, acc.',
    'hpo_bo_1d_best_val_acc': '1-D BO on the learning rate, best val. acc. after 7 trials',
    'hpo_grid_best_val_acc_median': 'grid search, best val. acc. (median of repeats)',
    'hpo_random_best_val_acc_median': 'random search, best val. acc. (median of repeats)',
    'hpo_bo_best_val_acc_median': 'Bayesian optimization, best val. acc. (median of repeats)',
    'hpo_hyperband_best_val_acc_median': 'Hyperband, best val. acc. (median of repeats)',
    'hpo_grid_test_acc_median': 'grid search, test acc. of the config found (median)',
    'hpo_random_test_acc_median': 'random search, test acc. of the config found (median)',
    'hpo_bo_test_acc_median': 'Bayesian optimization, test acc. of the config found (median)',
    'hpo_hyperband_test_acc_median': 'Hyperband, test acc. of the config found (median)',
    'hpo_grid_seconds_median': 'grid search, wall s per run (median)',
    'hpo_random_seconds_median': 'random search, wall s per run (median)',
    'hpo_bo_seconds_median': 'Bayesian optimization, wall s per run (median)',
    'hpo_hyperband_seconds_median': 'Hyperband, wall s per run (median)',
    'hpo_grid_reached_bar_fraction': "grid search, repeats reaching random search's median best",
    'hpo_random_reached_bar_fraction': 'random search, repeats reaching its own median best',
    'hpo_bo_reached_bar_fraction': "Bayesian optimization, repeats reaching random search's median best",
    'hpo_hyperband_reached_bar_fraction': "Hyperband, repeats reaching random search's median best",
    'hpo_grid_epochs_to_bar_median': "grid search, epochs to random search's median best",
    'hpo_random_epochs_to_bar_median': 'random search, epochs to its own median best',
    'hpo_bo_epochs_to_bar_median': "Bayesian optimization, epochs to random search's median best",
    'hpo_hyperband_epochs_to_bar_median': "Hyperband, epochs to random search's median best",
    'hpo_random_best_median_bar': "random search's median best val. acc. (the bar)",
    'grid_dp_max_error': 'grid world, DP vs exact Bellman solve, max error',
    'sarsa_online_return': 'SARSA, cliff walking, return while learning (last 100 episodes)',
    'q_learning_online_return': 'Q-learning, cliff walking, return while learning (last 100 episodes)',
    'monte_carlo_goal_fraction': 'Monte Carlo control, runs whose greedy path reaches the goal (fraction)',
    'pg_max_autograd_error': 'policy-gradient backward vs autograd, max rel. error',
    'numpy_actor_critic_eval_return': 'NumPy actor-critic, CartPole-v1 greedy return (100 episodes)',
    'numpy_reinforce_eval_return': 'NumPy REINFORCE, CartPole-v1 greedy return (100 episodes)',
    'numpy_reinforce_baseline_eval_return': 'NumPy REINFORCE + baseline, CartPole-v1 greedy return (100 episodes)',
    'numpy_actor_critic_seconds': 'NumPy actor-critic training s (CPU)',
    'baseline_variance_reduction': 'REINFORCE gradient variance, no baseline / learned baseline',
    'torch_dqn_eval_return': 'DQN, CartPole-v1 greedy return (100 episodes)',
    'torch_dqn_seconds': 'DQN training s (CPU)',
    'notebook_cpu_seconds': 'notebook CPU s',
    'mtl_shared_acc': 'hard sharing with "digit > 4", 100 digit labels, acc.',
    'mtl_separate_acc': 'separate networks (same budget), 100 digit labels, acc.',
    'mtl_shared_ink_acc': 'hard sharing with the ink label, acc.',
    'mtl_shared_ink_heavy_acc': 'hard sharing, ink loss weighted 30x, acc.',
    'mtl_soft_acc': 'soft sharing (best λ), acc.',
    'mtl_seconds': 'multi-task models (7), s',
    'fomaml_seconds': 'FO-MAML (NumPy) meta-training s',
    'maml_seconds': 'MAML (PyTorch, 2nd order) meta-training s',
    'maml_mse_1step': 'MAML, query MSE after 1 step',
    'fomaml_mse_1step': 'FO-MAML, query MSE after 1 step',
    'joint_mse_1step': 'joint pre-training, query MSE after 1 step',
    'maml_mse_5step': 'MAML, query MSE after 5 steps',
    'fomaml_mse_5step': 'FO-MAML, query MSE after 5 steps',
    'joint_mse_5step': 'joint pre-training, query MSE after 5 steps',
    'maml_mse_10step': 'MAML, query MSE after 10 steps',
    'fomaml_mse_10step': 'FO-MAML, query MSE after 10 steps',
    'joint_mse_10step': 'joint pre-training, query MSE after 10 steps',
    'maml_fo_cosine_trained': 'cosine of FO and 2nd-order meta-gradients at MAML θ',
    'onnx_cnn_test_acc': 'LeNet-5 trained briefly for export, MNIST test acc.',
    'onnx_gpt_val_loss': 'tiny GPT trained briefly for export, Tiny Shakespeare val. loss (nats/char)',
    'onnx_export_seconds': 'export and check of both models s',
    'onnx_cnn_max_abs_diff_ort': 'LeNet-5, onnxruntime vs PyTorch, largest abs. logit difference',
    'onnx_cnn_max_abs_diff_numpy': 'LeNet-5, NumPy ONNX interpreter vs PyTorch, largest abs. logit difference',
    'onnx_gpt_max_abs_diff_ort': 'tiny GPT, onnxruntime vs PyTorch, largest abs. logit difference',
    'onnx_gpt_max_abs_diff_numpy': 'tiny GPT, NumPy ONNX interpreter vs PyTorch, largest abs. logit difference',
    'onnx_cnn_latency_pytorch_seconds': 'LeNet-5, 64 digits, PyTorch latency s',
    'onnx_cnn_latency_onnxruntime_seconds': 'LeNet-5, 64 digits, onnxruntime latency s',
    'onnx_cnn_latency_numpy_seconds': 'LeNet-5, 64 digits, NumPy interpreter latency s',
    'onnx_gpt_latency_pytorch_seconds': 'tiny GPT, 8 x 32 chars, PyTorch latency s',
    'onnx_gpt_latency_onnxruntime_seconds': 'tiny GPT, 8 x 32 chars, onnxruntime latency s',
    'onnx_gpt_latency_numpy_seconds': 'tiny GPT, 8 x 32 chars, NumPy interpreter latency s',
    'detector_map50': 'tiny SSD, held-out digit canvases, mAP@0.5',
    'detector_map50_per_class_min': 'tiny SSD, lowest per-class AP@0.5',
    'detector_map75': 'tiny SSD, mAP@0.75',
    'detector_train_seconds': 'tiny SSD training s',
    'numpy_lenet_acc': 'NumPy LeNet-5 (short run), MNIST test acc.',
    'clean_acc_plain': 'PyTorch LeNet-5, MNIST test acc.',
    'clean_acc_adv': 'adversarially trained LeNet-5, MNIST test acc.',
    'saliency_max_abs_err': 'NumPy input gradient vs autograd, largest abs. error (float64)',
    'saliency_ink_ratio': 'saliency on strokes / mean saliency',
    'gradcam_ink_ratio': 'Grad-CAM mass near strokes / their area share',
    'class_model_mean_prob': 'class-model images, mean target probability',
    'numpy_fgsm_acc_eps01': 'NumPy LeNet-5, FGSM acc. at eps 0.1',
    'numpy_pgd_acc_eps01': 'NumPy LeNet-5, PGD acc. at eps 0.1',
    'fgsm_acc_eps01_plain': 'PyTorch LeNet-5, FGSM acc. at eps 0.1',
    'pgd_acc_eps01_plain': 'PyTorch LeNet-5, PGD acc. at eps 0.1',
    'strong_pgd_acc_eps01_plain': 'PyTorch LeNet-5, PGD-50 x 3 starts acc. at eps 0.1',
    'fgsm_acc_eps01_mlp': 'dense MLP (same training), FGSM acc. at eps 0.1',
    'fgsm_acc_eps01_adv': 'adversarially trained, FGSM acc. at eps 0.1',
    'pgd_acc_eps01_adv': 'adversarially trained, PGD acc. at eps 0.1',
    'adv_train_seconds': 'adversarial training s',
    'transfer_acc_numpy_to_torch': 'FGSM eps 0.2 made on NumPy LeNet, PyTorch acc.',
    'transfer_acc_torch_to_numpy': 'FGSM eps 0.2 made on PyTorch LeNet, NumPy acc.',
    'numpy_seq2seq_bleu': 'NumPy attention seq2seq en→zh (trained in NumPy), held-out BLEU, greedy',
    'numpy_seq2seq_baseline_bleu': 'most-frequent-translation baseline, same sentences',
    'numpy_seq2seq_nn_bleu': 'nearest-neighbour (memorising) baseline, same sentences',
    'conv_transpose_max_err': 'NumPy transposed conv vs F.conv_transpose2d, centred differences, autograd: worst error',
    'fcn_numpy_foreground_iou': 'NumPy FCN, held-out foreground IoU',
    'fcn_numpy_pixel_acc': 'NumPy FCN, held-out foreground pixel acc.',
    'fcn_numpy_seconds': 'NumPy FCN training s',
    'unet_miou': 'U-Net, held-out canvases mean IoU (11 classes)',
    'unet_pixel_acc': 'U-Net, held-out canvases pixel acc.',
    'unet_foreground_iou': 'U-Net, held-out foreground IoU (any digit)',
    'unet_seconds': 'U-Net training s',
}


def label(name: str) -> str:
    return LABELS.get(name, name)


def fmt(value: float) -> str:
    """Integers as integers, everything else with four significant digits."""
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def read_dir(folder: Path) -> dict[str, dict]:
    return {p.stem: load(p) for p in sorted(folder.glob("*.json")) if p.name != "course.json"}


def notebook_link(stem: str) -> str:
    return f"[{stem}](notebooks/{stem}.ipynb)"


def render_quick(folder: Path = RESULTS / "quick") -> str:
    rows = ["| notebook | results (quick profile) |", "|---|---|"]
    for stem, data in read_dir(folder).items():
        if data["profile"] != "quick":
            raise ValueError(f"{folder / stem}.json records the {data['profile']} profile, not quick")
        text = "; ".join(f"{label(k)} {fmt(v)}" for k, v in data["metrics"].items()) or "–"
        rows.append(f"| {notebook_link(stem)} | {text} |")
    return "\n".join(rows)


def render_gpu(folder: Path = RESULTS / "gpu") -> str:
    course_file = folder / "course.json"
    if not course_file.exists():
        return "Full profile on a GPU: not yet measured."
    course = json.loads(course_file.read_text(encoding="utf-8"))
    m = course["machine"]
    lines = [f"Measured on {m.get('gpu', '?')} (compute capability {m.get('capability', '?')}, "
             f"{m.get('gpu_memory_gib', '?')} GiB; driver and name from nvidia-smi: {m.get('nvidia_smi', '?')}), "
             f"CUDA runtime {m.get('cuda_runtime', '?')}, PyTorch {m.get('torch', '?')}, "
             f"{m.get('cpu_count', '?')} CPU cores; {course['slots']} notebooks at a time, "
             f"{course['threads_per_notebook']} CPU threads each; whole course {fmt(course.get('course_wall_s', 0))} s.",
             "", "| notebook | wall s | status | results |", "|---|---|---|---|"]
    metrics = read_dir(folder)
    for stem, run in course["notebooks"].items():
        recorded = metrics.get(stem, {}).get("metrics", {})
        text = "; ".join(f"{label(k)} {fmt(v)}" for k, v in recorded.items()) or "–"
        lines.append(f"| {notebook_link(stem)} | {fmt(run['wall_s']) if 'wall_s' in run else '–'} | "
                     f"{run['status']} | {text} |")
    return "\n".join(lines)


RENDERERS = {"quick": render_quick, "gpu": render_gpu}


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- results:{name} -->)(.*?)(<!-- /results:{name} -->)", re.S)


def render_readme(text: str) -> str:
    for name, render in RENDERERS.items():
        pattern = _block(name)
        if not pattern.search(text):
            raise ValueError(f"README has no <!-- results:{name} --> ... <!-- /results:{name} --> block")
        table = render()
        text = pattern.sub(lambda m: m.group(1) + "\n" + table + "\n" + m.group(3), text)
    return text


def unlabelled(folders=(RESULTS / "quick", RESULTS / "gpu")) -> list[str]:
    """Recorded metric names that have no README label."""
    names = {n for f in folders if f.exists() for d in read_dir(f).values() for n in d["metrics"]}
    return sorted(n for n in names if n not in LABELS)


def collect(profile_dir: str, source: Path, course: Path | None) -> list[Path]:
    target = RESULTS / profile_dir
    files = sorted(source.glob("*.json"))
    if not files:
        raise SystemExit(f"no metric files in {source}: run the notebooks first")
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in files:
        load(path)  # checks the layout
        copied.append(Path(shutil.copy2(path, target / path.name)))
    if course is not None:
        copied.append(Path(shutil.copy2(course, target / "course.json")))
    return copied


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nndl_helpers.results", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="copy recorded metric files into results/<name>/")
    c.add_argument("name", choices=sorted(RENDERERS))
    c.add_argument("--from", dest="source", type=Path, default=None)
    c.add_argument("--course", type=Path, default=None, help="course.json of benchmarks/gpu_course.py")
    r = sub.add_parser("readme", help="rewrite (or --check) the README's generated tables")
    r.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "collect":
        for path in collect(args.name, args.source or metrics_dir(), args.course):
            print(path.relative_to(ROOT))
        return 0
    old = README.read_text(encoding="utf-8")
    new = render_readme(old)
    if args.check:
        if new != old:
            print("README.md's results tables differ from results/: run python -m nndl_helpers.results readme")
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    print("README.md " + ("updated" if new != old else "already up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
